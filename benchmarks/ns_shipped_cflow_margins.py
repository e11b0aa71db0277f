"""Chapter 3's shipped quick cFlow over seeds: for each seed and colour variance, the raw-data CNN and the same CNN
on the flow's null-samples (6,000 biased training and 3,000 test images of that seed), and a linear colour probe
on 4x4-pooled test images (as ns_quick_search.py), originals against null-samples. The flow is the one the package
ships (``FAIRLAB_PROFILE=quick``), or a whole cFlow saved with torch.save given as MODEL.

    OMP_NUM_THREADS=1 FAIRLAB_PROFILE=quick python benchmarks/ns_shipped_cflow_margins.py 0,1,2,3,4 [MODEL.pt]
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ns_quick_search import colour_features
from fairlab import metrics
from fairlab.data import coloured_mnist
from fairlab.methods import null_sampling as ns
from fairlab.train import predict
from fairlab.experiments import null_sampling as E
torch.set_num_threads(1)
seeds = [int(a) for a in sys.argv[1].split(",")]
if len(sys.argv) > 2:  # a cFlow we saved ourselves (a pickled module)
    model = torch.load(sys.argv[2], weights_only=False).eval()
else:
    model = E.load_shipped_cflow(coloured_mnist("nifr", "test", colour_variance=0.02, seed=0, subsample=10), device="cpu")
for seed in seeds:
    for var in (0.02, 0.05):
        t = time.perf_counter()
        tr = coloured_mnist("nifr", "train", colour_variance=var, seed=seed, subsample=6000)
        te = coloured_mnist("nifr", "test", colour_variance=var, seed=seed, subsample=3000)
        ntr, nte = ns.null_sample_dataset(model, tr), ns.null_sample_dataset(model, te)
        row = {"seed": seed, "variance": var,
               "probe_raw": round(metrics.probe_accuracy(colour_features(te.x), te.s)["accuracy"], 3),
               "probe_null": round(metrics.probe_accuracy(colour_features(nte.x), nte.s)["accuracy"], 3)}
        for name, (a, b) in (("raw", (tr, te)), ("null", (ntr, nte))):
            clf = ns.fit_downstream(a, seed=seed, progress=False, **{**ns.downstream_options(), "architecture": "conv", "width": 8, "epochs": 4, "batch_size": 64, "lr": 1e-3})
            s = metrics.summary(b.y, predict(clf, b), sensitive_features=b.group)
            row[f"{name}_accuracy"] = round(s["accuracy"], 3); row[f"{name}_wga"] = round(s["worst_group_accuracy"], 3)
        row["seconds"] = round(time.perf_counter() - t, 1)
        print(json.dumps(row), flush=True)
