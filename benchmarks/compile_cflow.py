"""How long ``torch.compile`` takes for the published cFlow: the whole loss as one graph, or each layer on its own.

    python benchmarks/compile_cflow.py regional          # compile_layers: the blocks of a level share their code
    python benchmarks/compile_cflow.py whole             # torch.compile(loss): one graph of the unrolled flow
    python benchmarks/compile_cflow.py regional --blocks 2 --device cpu     # a smoke test

Each run starts from an empty compile cache of its own (a fresh TORCHINDUCTOR_CACHE_DIR), so it pays what a fresh
machine pays. It times the first forward (tracing and compiling it) and the first backward (compiling the backward)
on a batch of 2 images, then checks the compiled loss and gradients against the eager ones. Prints one JSON line.
On a GPU the kernels are compiled for it too; on a CPU the time is mostly tracing and graph work, which grows with
the size of the graph that is compiled.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("regional", "whole"))
    parser.add_argument("--blocks", type=int, default=24, help="blocks per level (published: 24)")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if "torch._inductor" in sys.modules:
        raise RuntimeError("set the cache directory before torch._inductor is imported")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="fairlab_compile_")

    from fairlab import config
    from fairlab.data.base import Batch, BiasedDataset
    from fairlab.methods import null_sampling as ns
    from fairlab.models.flow import compile_layers

    device = torch.device(args.device) if args.device else config.device()
    torch.manual_seed(0)
    x, s = torch.rand(2, 3, 32, 32, device=device), torch.randint(0, 10, (2,), device=device)
    zeros = torch.zeros(2, dtype=torch.long, device=device)
    data = BiasedDataset(x=x, y=zeros, s=s, num_classes=1, num_groups=10)
    model = ns.build_cflow(data, levels=3, blocks=args.blocks, width=args.width, bias_dims=6).to(device)
    batch = Batch(x, zeros, s, torch.arange(2, device=device))

    def loss(m, b):
        return ns.cflow_loss(m, b, w_adv=0.01)["loss"]

    reference = loss(model, batch)
    reference.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    if args.mode == "regional":
        compile_layers(model.flow)
        fn = loss
    else:
        fn = torch.compile(loss)
    start = time.perf_counter()
    value = fn(model, batch)
    forward = time.perf_counter() - start
    start = time.perf_counter()
    value.backward()
    backward = time.perf_counter() - start
    scale = max(g.abs().max().item() for g in eager_grads)
    grad_error = max((p.grad - g).abs().max().item() for p, g in zip(model.parameters(), eager_grads)) / scale
    print(json.dumps({
        "mode": args.mode, "device": config.describe_device(device), "torch": torch.__version__,
        "levels": 3, "blocks": args.blocks, "width": args.width,
        "first_forward_seconds": round(forward, 1), "first_backward_seconds": round(backward, 1),
        "loss_eager": round(reference.item(), 6), "loss_compiled": round(value.item(), 6),
        "max_gradient_difference_over_largest_gradient": float(f"{grad_error:.2e}"),
    }))


if __name__ == "__main__":
    main()
