"""Chapter 5, a tried change (not adopted): add to the module's loss REST x the mean over cells (y, s) of
|mean(w_R | y, s)|^2, pinning w_R's cell means at 0 (independence of w_R from y and s in the first moment), and
measure the counterfactuals on binary Coloured MNIST (fls_margins.measure).

    OMP_NUM_THREADS=1 FAIRLAB_CHECKPOINTS=<scratch> python benchmarks/fls_rest_centring.py REST SEEDS ['{"module": {...}}']
"""
import sys, json, torch, torch.nn.functional as F
import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fairlab.methods.fair_latent_space as fls
orig = fls.fls_loss
REST = float(sys.argv[1]); seeds = [int(a) for a in sys.argv[2].split(",")]
sets = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
def rest_term(w_r, y, s):
    cell = 2 * y + s
    hot = F.one_hot(cell, 4).to(w_r.dtype)
    count = hot.sum(0)
    occ = (count > 0).to(w_r.dtype)
    mean_r = hot.T @ w_r / count.clamp(min=1)[:, None]
    return (mean_r.pow(2).sum(1) * occ).sum() / occ.sum()
def patched(model, z, y, s, **kw):
    out = orig(model, z, y, s, **kw)
    w, _ = model.transform(z)
    _, _, w_r = model.split(w)
    r = rest_term(w_r, y, s)
    out["loss"] = out["loss"] + REST * r
    out["rest"] = r
    return out
fls.fls_loss = patched
import fls_margins as M
for seed in seeds:
    row = M.measure("cmnist-binary", seed, sets)
    keys = ["w_Y_eo", "ERM_eo", "w_Y_worst_group_accuracy", "ERM_worst_group_accuracy", "w_Y_accuracy", "rec_flip_s_s_change", "rec_flip_s_y_change", "flip_s_s_change", "flip_s_y_change", "rec_move_y_y_change", "module_seconds"]
    print(json.dumps({"rest": REST, "seed": seed, "sets": sets, **{k: row[k] for k in keys}}), flush=True)
