"""Where a training step's time goes on a GPU: kernels launched, host syncs and GPU busy time per step.

    python benchmarks/profile_step.py sih                  # Signal is Harder, rho = 1%, all training images
    python benchmarks/profile_step.py sih lff vanilla --compile
    python benchmarks/profile_step.py sih --subsample 3000 --device cpu     # a smoke test
    python benchmarks/profile_step.py cflow [--compile]    # the published cFlow, 10 steps, and its speed options

Each method trains one epoch unprofiled (allocations, cuDNN's choices, compilation), then, under
``torch.profiler``, one epoch and two epochs, each from a fresh model: the difference between the two is one more
epoch, without the set-up both share (building the model, moving its tensors to the GPU: one host wait per tensor).
Per training step of that epoch it prints the kernels launched, the calls that wait for the GPU (stream, device and
event synchronisations; copies to the host), the GPU's busy time (the sum of kernel and copy durations; the spans
of ranges such as ``Optimizer.step`` are not kernels and are left out) and the wall time: a step whose wall time is
far above its busy time is bound by launches, not by arithmetic (CUDA graphs help there). Then the fifteen operators
with the most GPU time a step (CPU time on a CPU). The epoch includes its end (one validation pass, a few syncs), so
the per-step numbers carry that share.

``cflow``: the full profile's cFlow (3 levels x 24 blocks x 512) on 2,560 representative images (10 steps of 256
per epoch). First the steady milliseconds per step (second epoch) under each speed setting: float32 NCHW (the full
profile's setting; TF32 convolutions, torch's default), bf16 autocast, bf16 in NHWC, the step captured as one CUDA
graph in float32 and in bf16 NHWC (with ``--compile``, also float32 NCHW with the loss compiled, and bf16 NHWC
compiled and captured); a setting that fails prints its error and the rest go on. Then the profile of the
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
        "sih": lambda epochs: fit_sih(train, val=val, epochs=epochs, patience=None, device=device,
                                      compile=args.compile, progress=False),
        "lff": lambda epochs: fit_lff(train, epochs=epochs, device=device, compile=args.compile, progress=False),
        "vanilla": lambda epochs: fit_erm(train, epochs=epochs, device=device, progress=False),
    }
    batch_size = 256
    steps = len(train) // batch_size
    print(f"{config.run_info()} | compile={args.compile} | {steps} steps of {batch_size} per epoch")
    for method in args.methods:
        report(method, profiled(runs[method], device), steps)


def profiled(run, device: torch.device) -> Counter:
    """``run(1)`` to warm up, then ``run(1)`` and ``run(2)`` under the profiler: what the second epoch adds."""
    run(1)
    one, two = (measure(lambda: run(epochs), device) for epochs in (1, 2))
    return Counter({key: two[key] - one[key] for key in two})


def measure(run, device: torch.device) -> Counter:
    """Counts and times of one profiled ``run()``: kernels, launches, host waits, copies to the host, GPU busy
    microseconds, wall seconds, and each operator's self time (device time on a GPU) under ``("op", name)``."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    totals = Counter(wall=wall)
    for event in prof.events():
        if str(event.device_type).endswith("CUDA"):
            if getattr(event, "is_user_annotation", False):
                continue  # a range's span on the GPU timeline (Optimizer.step#...), not work
            totals["kernels"] += 1
            totals["busy_us"] += event.device_time if hasattr(event, "device_time") else event.cuda_time
            if "DtoH" in event.name or "Device -> Pageable" in event.name or "Device -> Pinned" in event.name:
                totals["to_host"] += 1
        elif event.name in WAITS or event.name == "cudaLaunchKernel":
            totals[event.name] += 1
    on_gpu = device.type == "cuda"
    for op in prof.key_averages():
        if op.key.startswith("aten::"):
            totals["op", op.key] += op.self_device_time_total if on_gpu else op.self_cpu_time_total
    return totals


def cflow(device: torch.device, args) -> None:
    options = dict(protocol("null_sampling", "full")["cflow"], iterations=20)  # two epochs of 10 steps
    options.update({k: v for k, v in vars(args).items() if k in ("blocks", "width") and v is not None})
    data = coloured_mnist("nifr", "representative", colour_variance=0.02, seed=0, subsample=10 * 256)
    print(f"{config.run_info()} | cFlow {options['levels']}x{options['blocks']}x{options['width']}, 10 steps of 256")
    variants = {"float32 (TF32 convs), NCHW": dict(bf16=False, channels_last=False),
                "bf16, NCHW": dict(bf16=True, channels_last=False),
                "bf16 + NHWC": dict(bf16=True, channels_last=True),
                "float32, NCHW, CUDA graph": dict(bf16=False, channels_last=False, cuda_graph=True),
                "bf16 + NHWC, CUDA graph": dict(bf16=True, channels_last=True, cuda_graph=True)}
    if args.compile:  # the loss (forward and backward) through torch.compile; its first epoch pays for compiling
        variants["float32, NCHW, torch.compile"] = dict(bf16=False, channels_last=False, compile=True)
        variants["bf16 + NHWC, compile, CUDA graph"] = dict(bf16=True, channels_last=True, compile=True,
                                                          cuda_graph=True)
    for name, variant in variants.items():
        try:
            _, history = ns.fit_cflow(data, device=device, progress=False, **{**options, **variant})
        except Exception as error:  # noqa: BLE001 (a setting that fails here must not cost the others)
            print(f"{name:>32}: failed: {type(error).__name__}: {error}", flush=True)
            continue
        print(f"{name:>32}: {1000 * history['seconds'].iloc[-1] / 10:7.1f} ms per step "
              f"(first epoch {1000 * history['seconds'].iloc[0] / 10:.0f})", flush=True)

    def run(epochs: int):  # the protocol's own speed settings, epochs of 10 steps
        return ns.fit_cflow(data, device=device, progress=False, **dict(options, iterations=10 * epochs))

    report("cflow", profiled(run, device), 10)


def report(method: str, per_epoch: dict, steps: int) -> None:
    """Print one epoch's counts per step, then the operators with the most time a step."""
    waits = {name: per_epoch[name] for name in WAITS if per_epoch[name]}
    wall = per_epoch["wall"]
    print(f"\n## {method}: one epoch, {steps} steps, {wall:.2f} s wall ({1000 * wall / steps:.2f} ms per step)")
    print(f"per step: {per_epoch['kernels'] / steps:.1f} GPU kernels and copies, "
          f"{per_epoch['cudaLaunchKernel'] / steps:.1f} kernel launches, {sum(waits.values()) / steps:.2f} host "
          f"waits ({waits} in the epoch), {per_epoch['to_host'] / steps:.2f} copies to the host, GPU busy "
          f"{per_epoch['busy_us'] / 1000 / steps:.2f} ms ({100 * per_epoch['busy_us'] / 1e6 / max(wall, 1e-9):.0f}% "
          "of the wall time)")
    ops = sorted(((value, key[1]) for key, value in per_epoch.items() if isinstance(key, tuple)), reverse=True)
    print(f"{'operator':<48} {'ms per step':>12}")
    for value, name in ops[:15]:
        print(f"{name:<48} {value / 1000 / steps:12.3f}")


if __name__ == "__main__":
    main()
