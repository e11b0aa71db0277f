"""Where a training step's time goes on a GPU: kernels launched, host syncs and GPU busy time per step.

    python benchmarks/profile_step.py sih                  # Signal is Harder, rho = 1%, all training images
    python benchmarks/profile_step.py sih lff vanilla --compile
    python benchmarks/profile_step.py sih --subsample 3000 --device cpu     # a smoke test
    python benchmarks/profile_step.py cflow [--compile]    # the published cFlow, 10 steps, and its speed options

Each method trains one epoch unprofiled (allocations, cuDNN's choices, compilation), then one more epoch from a
fresh model under ``torch.profiler``. Per training step it prints the kernels launched, the calls that wait for the
GPU (stream, device and event synchronisations; copies to the host), the GPU's busy time (the sum of kernel
durations) and the wall time: a step whose wall time is far above its busy time is bound by launches, not by
arithmetic (CUDA graphs help there). Then the fifteen operators with the most GPU time. One epoch includes the end of
epoch work (one validation pass, one sync), so the per-step numbers carry that epoch's share.

``cflow``: the full profile's cFlow (3 levels x 24 blocks x 512) on 2,560 representative images (10 steps of 256
per epoch). First the steady seconds per step (second epoch) under each speed setting: bf16 autocast and NHWC
(fit_cflow's default on a GPU), bf16 alone, float32 (TF32 convolutions, torch's default), and bf16 NHWC with
cuDNN's algorithm search (with ``--compile``, float32 NCHW with the loss compiled too); then the profile of the
protocol's setting.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile

from fairlab import config
from fairlab.data import coloured_mnist
from fairlab.methods import null_sampling as ns
from fairlab.methods.erm import fit_erm
from fairlab.methods.lff import fit_lff
from fairlab.methods.sih import fit_sih
from fairlab.protocols import protocol

# runtime calls that make the host wait for the device
WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("methods", nargs="+", choices=("sih", "lff", "vanilla", "cflow"))
    parser.add_argument("--bias-conflicting-ratio", type=float, default=0.01)
    parser.add_argument("--subsample", type=int, default=None, help="train on this many images")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the loss (SiH, LfF; cflow: one more variant)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--blocks", type=int, default=None, help="cflow: blocks per level (a smoke test)")
    parser.add_argument("--width", type=int, default=None, help="cflow: coupling width (a smoke test)")
    args = parser.parse_args()

    device = torch.device(args.device) if args.device else config.device()
    if args.methods == ["cflow"]:
        return cflow(device, args)
    data = coloured_mnist("lff", "train", bias_conflicting_ratio=args.bias_conflicting_ratio, seed=0,
                          subsample=args.subsample).to(device)
    train, val = data.random_split(0.1, seed=0)
    runs = {
        "sih": lambda: fit_sih(train, val=val, epochs=1, patience=None, device=device, compile=args.compile,
                               progress=False),
        "lff": lambda: fit_lff(train, epochs=1, device=device, compile=args.compile, progress=False),
        "vanilla": lambda: fit_erm(train, epochs=1, device=device, progress=False),
    }
    batch_size = 256
    steps = len(train) // batch_size
    print(f"{config.run_info()} | compile={args.compile} | {steps} steps of {batch_size} per epoch")
    for method in args.methods:
        report(method, *profiled(runs[method], device), steps)


def profiled(run, device: torch.device):
    """``run()`` once to warm up, then once under the profiler: ``(profiler, wall seconds of that second run)``."""
    run()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    return prof, wall


def cflow(device: torch.device, args) -> None:
    options = dict(protocol("null_sampling", "full")["cflow"], iterations=20)  # two epochs of 10 steps
    options.update({k: v for k, v in vars(args).items() if k in ("blocks", "width") and v is not None})
    data = coloured_mnist("nifr", "representative", colour_variance=0.02, seed=0, subsample=10 * 256)
    print(f"{config.run_info()} | cFlow {options['levels']}x{options['blocks']}x{options['width']}, 10 steps of 256")
    variants = {"bf16 + NHWC (GPU default)": dict(bf16=True, channels_last=True),
                "bf16, NCHW": dict(bf16=True, channels_last=False),
                "float32 (TF32 convs), NCHW": dict(bf16=False, channels_last=False),
                "bf16 + NHWC + cudnn.benchmark": dict(bf16=True, channels_last=True, benchmark=True)}
    if args.compile:  # the loss (forward and backward) through torch.compile; its first epoch pays for compiling
        variants["float32, NCHW, torch.compile"] = dict(bf16=False, channels_last=False, compile=True)
    for name, variant in variants.items():
        torch.backends.cudnn.benchmark = variant.pop("benchmark", False)
        _, history = ns.fit_cflow(data, device=device, progress=False, **{**options, **variant})
        print(f"{name:>32}: {1000 * history['seconds'].iloc[-1] / 10:7.1f} ms per step "
              f"(first epoch {1000 * history['seconds'].iloc[0] / 10:.0f})", flush=True)
    torch.backends.cudnn.benchmark = False
    options.update(iterations=10)  # one epoch, the protocol's own speed settings
    report("cflow", *profiled(lambda: ns.fit_cflow(data, device=device, progress=False, **options), device), 10)


def report(method: str, prof, wall: float, steps: int) -> None:
    calls, kernels, busy_us, to_host = Counter(), 0, 0.0, 0
    for event in prof.events():
        if str(event.device_type).endswith("CUDA"):
            kernels += 1
            busy_us += event.device_time if hasattr(event, "device_time") else event.cuda_time
            if "DtoH" in event.name or "Device -> Pageable" in event.name or "Device -> Pinned" in event.name:
                to_host += 1
        elif event.name in WAITS or event.name in ("cudaLaunchKernel", "cudaMemcpyAsync"):
            calls[event.name] += 1
    waits = sum(calls[name] for name in WAITS)
    print(f"\n## {method}: one epoch, {steps} steps, {wall:.2f} s wall ({1000 * wall / steps:.2f} ms per step)")
    print(f"per step: {kernels / steps:.1f} GPU kernels and copies, {calls['cudaLaunchKernel'] / steps:.1f} "
          f"kernel launches, {waits / steps:.2f} host waits ({dict((k, calls[k]) for k in WAITS if calls[k])} in "
          f"the epoch), {to_host / steps:.2f} copies to the host, GPU busy {busy_us / 1000 / steps:.2f} ms "
          f"({100 * busy_us / 1e6 / wall:.0f}% of the wall time)")
    sort = "self_cuda_time_total" if any(str(e.device_type).endswith("CUDA") for e in prof.events()) \
        else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=70))


if __name__ == "__main__":
    main()
