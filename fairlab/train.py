"""The one training loop every method uses.

``fit`` runs epochs over a ``BiasedDataset`` that lives on the training device, calls the method's ``step`` on each
batch, and keeps a per-epoch history. What a method does in a step (one loss, two optimisers, an EMA of per-sample
losses...) stays in the method's file; what every method needs stays here:

- device placement (data and model moved once, before the first epoch),
- optional bf16 autocast,
- a tqdm progress bar,
- NaN/inf detection *without* a host sync per step: each step's loss is checked on the device and the first bad
  step is reported at the end of the epoch,
- early stopping on a validation metric, restoring the best weights,
- atomic checkpoints, loaded back with ``weights_only=True``,
- ``capture_step``: a whole step (forward, backward, optimiser) captured once as a CUDA graph and replayed, for
  steps that launch thousands of small kernels.

A step function takes a ``Batch`` and returns a dict of scalar tensors; the key ``"loss"`` is the one checked
for NaN/inf. Use ``make_step`` for the common case: one loss, one optimiser.
"""
from __future__ import annotations

import copy
import math
import numbers
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fairlab import config
from fairlab.data.base import Batch, BiasedDataset
from fairlab.errors import NonFiniteLossError

StepFn = Callable[[Batch], dict]


def check_positive_count(value, name: str) -> None:
    """``value`` must be a whole number >= 1 (epochs, batch_size...): a 0 would silently train nothing."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}.")


def check_finite_state(model: nn.Module, desc: str) -> None:
    """Raise ``NonFiniteLossError`` if a weight of ``model`` is NaN/inf or a buffer NaN (one host sync).

    (A buffer may hold -inf on purpose, e.g. the log of a running mean that starts at 0.)
    """
    state = {name: torch.isfinite(p).all() for name, p in model.named_parameters()}
    state.update({name: ~torch.isnan(b).any() for name, b in model.named_buffers() if b.is_floating_point()})
    if state and not bool(torch.stack(list(state.values())).all()):
        bad = [name for name, ok in state.items() if not bool(ok)]
        raise NonFiniteLossError(
            f"{desc}: training ended with NaN/inf weights ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}). "
            "Lower the learning rate, check the inputs for NaN, or clip gradients."
        )


def make_step(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Batch], dict | torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    bf16: bool = False,
    max_grad_norm: float | None = None,
    capturable: bool = False,
) -> StepFn:
    """The usual step: forward under autocast, ``loss.backward()``, optional clipping, ``optimizer.step()``.

    ``loss_fn(model, batch)`` returns the loss, or a dict with the loss under ``"loss"`` and anything else to log.
    ``capturable``: the step will be captured in a CUDA graph (``capture_step``), so autocast keeps no cache of
    cast weights (the values are the same either way).
    """

    def step(batch: Batch) -> dict:
        with autocast(batch.x.device, bf16, cache=not capturable):
            out = loss_fn(model, batch)
        logs = out if isinstance(out, dict) else {"loss": out}
        optimizer.zero_grad(set_to_none=True)
        logs["loss"].backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        return {k: v.detach() for k, v in logs.items()}

    return step


def autocast(device: torch.device, enabled: bool, cache: bool = True):
    """bf16 autocast on the given device, or a no-op. ``cache=False`` inside a captured CUDA graph."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, cache_enabled=cache)


def capture_step(step: StepFn, example: Batch, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 warmup: int = 3) -> StepFn:
    """``step`` captured once as a CUDA graph, then replayed for every batch: one launch instead of thousands.

    What a captured step may do: the same work on every call. No host syncs (``.item()``, ``if tensor:``), no
    shapes that change (every batch must have ``example``'s shape: train with ``drop_last=True``), no new state
    in the optimiser (build it with ``capturable=True``) and no autocast cache (``make_step(capturable=True)``).
    Changing parameters in place between steps (an adversary re-initialised) is fine: the graph reads the same
    memory.

    The graph needs the optimiser's state to exist before it is captured, so ``warmup`` steps run on ``example``
    first (on a side stream, as PyTorch's CUDA-graph notes ask); then the model's weights are put back and the
    optimiser's state zeroed, which is the fresh state of the Adam family (Adam, AdamW, RAdam): training starts
    where an eager run starts. Randomness drawn by the warm-up steps (dropout, a VAE's noise) is not given back.

    Returns a step function with the same contract as ``step``: it copies the batch into the graph's input,
    replays the graph and returns copies of the logged values.
    """
    device = example.x.device
    if not all(group.get("capturable", False) for group in optimizer.param_groups):
        raise ValueError(f"{type(optimizer).__name__} must be built with capturable=True to be captured.")
    if device.type != "cuda":
        raise ValueError(f"a CUDA graph needs the data on a CUDA device, not {device}: train without cuda_graph.")
    static = Batch(*(t.clone() for t in example))
    weights = copy.deepcopy(model.state_dict())
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step(static)
    torch.cuda.current_stream(device).wait_stream(side)
    with torch.no_grad():
        model.load_state_dict(weights)  # copies in place: the graph will read these tensors
        for state in optimizer.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    value.zero_()
    optimizer.zero_grad(set_to_none=True)  # the captured backward allocates the gradients in the graph's pool
    graph = torch.cuda.CUDAGraph()
    try:
        # captured on the warm-up's stream: the per-stream library handles and workspaces exist there already
        with torch.cuda.graph(graph, stream=side):
            logs = step(static)
    except RuntimeError as error:  # CUDA's own words ("operation not permitted when stream is capturing") say little
        raise RuntimeError(
            f"the training step could not be captured as a CUDA graph ({error}). A captured step may not wait for "
            "the GPU (.item(), float(tensor), printing a tensor), copy from the CPU or change shapes: find that "
            "line, or train without cuda_graph."
        ) from error

    def replay(batch: Batch) -> dict:
        for buffer, value in zip(static, batch):
            buffer.copy_(value)
        graph.replay()
        return {key: value.clone() for key, value in logs.items()}

    return replay


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` so that a crash never leaves a half-written file: temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint written by ``save_checkpoint`` (tensors and plain containers only: ``weights_only=True``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


@torch.no_grad()
def evaluate_loss(step_loss: Callable[[Batch], dict], data: BiasedDataset, batch_size: int = 1024) -> dict:
    """Average each logged quantity of ``step_loss(batch)`` over ``data`` (no gradients), weighted by batch size."""
    totals: dict[str, torch.Tensor] = {}
    for batch in data.batches(batch_size):
        for key, value in step_loss(batch).items():
            totals[key] = totals.get(key, 0.0) + value.detach().float() * len(batch.y)
    return {key: float(value) / len(data) for key, value in totals.items()}


@torch.no_grad()
def predict(model: nn.Module, data: BiasedDataset, batch_size: int = 2048) -> torch.Tensor:
    """Hard predictions (argmax of the logits) of ``model`` on ``data``, in data order, on the data's device.

    The data is moved to the model's device for the forward passes (a model trained on a GPU, a data set loaded on
    the CPU), and the predictions moved back.
    """
    was_training = model.training
    model.eval()
    on_model = data.to(model_device(model, data.device))
    preds, finite = [], torch.ones((), dtype=torch.bool, device=on_model.device)
    for batch in on_model.batches(batch_size):
        logits = model(batch.x)
        finite &= torch.isfinite(logits).all()  # on the device: one sync at the end
        preds.append(logits.argmax(1))
    model.train(was_training)
    if not bool(finite):
        # the argmax of NaN logits is a constant class: chance-level numbers that look like a result
        raise NonFiniteLossError(
            f"the model's outputs on {data.name or 'the data'} are NaN/inf: its weights blew up in training. "
            "Lower the learning rate, check the inputs for NaN, or clip gradients."
        )
    return torch.cat(preds).to(data.device)


@torch.no_grad()
def outputs(model: nn.Module, data: BiasedDataset, fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
            batch_size: int = 2048) -> torch.Tensor:
    """``fn(x)`` (default: ``model(x)``) for every sample of ``data``, in order, with ``model`` in eval mode: (N, ...)
    on the data's device. What the methods' ``representation`` is made of (e.g. ``fn=model.features``)."""
    was_training = model.training
    model.eval()
    on_model = data.to(model_device(model, data.device))
    fn = fn or model
    out = torch.cat([fn(batch.x) for batch in on_model.batches(batch_size)])
    model.train(was_training)
    return out.to(data.device)


def model_device(model: nn.Module, default: torch.device | None = None) -> torch.device:
    """The device of the model's first parameter (``default``, else the CPU, for a model without parameters)."""
    return next((p.device for p in model.parameters()), default or torch.device("cpu"))


def fit(
    model: nn.Module,
    train_data: BiasedDataset,
    step: StepFn,
    *,
    epochs: int,
    batch_size: int = 256,
    drop_last: bool = True,
    validate: Callable[[], dict] | None = None,
    monitor: str | None = None,
    mode: str = "min",
    patience: int | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    checkpoint: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    desc: str = "train",
    max_seconds: float | None = None,
) -> pd.DataFrame:
    """Train ``model`` with ``step`` for up to ``epochs`` epochs; return the per-epoch history.

    Args:
        model: the module(s) being trained (an ``nn.Module``; wrap several in an ``nn.ModuleDict``). Its state is
            what early stopping saves and restores.
        train_data: moved to ``device`` once; batches are drawn on the device.
        step: ``step(batch) -> dict`` of scalar tensors, doing the whole update (see ``make_step``).
        validate: called after each epoch (model in eval mode, no grad) -> dict of floats, merged into the history.
        monitor, mode, patience: early stopping on ``history[monitor]`` ("min" or "max"): stop after ``patience``
            epochs in a row without improvement and restore the best weights. Without ``patience`` the best weights are still
            restored at the end when ``monitor`` is given.
        on_epoch_end: ``on_epoch_end(epoch, row)`` after validation (e.g. a learning-rate scheduler).
        checkpoint: if given, the best state is also written there atomically.
        max_seconds: stop after the epoch in which this many seconds of training have passed (None: every epoch);
            ``frame.attrs["out_of_time"]`` says whether it did.
    Returns:
        a DataFrame with one row per epoch: the mean of every logged quantity, validation metrics, seconds.
    """
    check_positive_count(epochs, "epochs")
    check_positive_count(batch_size, "batch_size")
    device = torch.device(device) if device is not None else config.device()
    progress = config.progress_enabled() if progress is None else progress
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
    if patience is not None and monitor is None:
        raise ValueError("early stopping needs monitor=<a key of the validation dict>.")
    if len(train_data) < batch_size and drop_last:
        raise ValueError(
            f"{train_data.name or 'train_data'} has {len(train_data)} samples, fewer than one batch of {batch_size} "
            "with drop_last=True: lower batch_size."
        )
    model.to(device)
    data = train_data.to(device)
    n_batches = data.num_batches(batch_size, drop_last)

    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive (or None for no limit), got {max_seconds!r}.")
    history, best_value, best_state, best_epoch, bad_epochs = [], None, None, -1, 0
    began, out_of_time = time.perf_counter(), False
    sign = 1.0 if mode == "min" else -1.0
    bar = tqdm(total=epochs * n_batches, desc=desc, disable=not progress, leave=False, unit="batch")
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        # index of the first step whose loss was not finite (n_batches if none): kept on the device, no sync
        first_bad = torch.full((), n_batches, device=device, dtype=torch.long)
        for i, batch in enumerate(data.batches(batch_size, shuffle=True, drop_last=drop_last)):
            logs = step(batch)
            finite = torch.isfinite(logs["loss"])
            first_bad = torch.where(finite | (first_bad < i), first_bad, torch.full_like(first_bad, i))
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value.float()
            bar.update(1)
        bad = int(first_bad)  # one sync per epoch
        if bad < n_batches:
            bar.close()
            raise NonFiniteLossError(
                f"{desc}: the loss became NaN/inf at epoch {epoch}, step {bad} (global step {epoch * n_batches + bad}). "
                "Lower the learning rate, check the inputs for NaN, or clip gradients."
            )
        row = {"epoch": epoch, **{k: float(v) / n_batches for k, v in sums.items()}}
        if validate is not None:
            model.eval()
            with torch.no_grad():
                validation = validate()
            model.train()
            row.update(validation)
            bad = [k for k, v in validation.items() if (k == monitor or "loss" in k) and not math.isfinite(float(v))]
            if bad:
                bar.close()
                raise NonFiniteLossError(
                    f"{desc}: the validation {', '.join(bad)} became NaN/inf at epoch {epoch}. "
                    "Lower the learning rate, check the inputs for NaN, or clip gradients."
                )
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

        if monitor is not None:
            if monitor not in row:
                raise KeyError(f"monitor={monitor!r} is not among the logged values {sorted(row)}.")
            value = row[monitor]
            if best_value is None or sign * value < sign * best_value:
                best_value, best_epoch, bad_epochs = value, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
                if checkpoint is not None:
                    save_checkpoint({"model": best_state, "epoch": epoch, monitor: value}, checkpoint)
            else:
                bad_epochs += 1
            bar.set_postfix({monitor: f"{value:.4g}", "best": f"{best_value:.4g}"})
            if patience is not None and bad_epochs >= patience:
                break
        if max_seconds is not None and time.perf_counter() - began >= max_seconds and epoch < epochs - 1:
            out_of_time = True
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    check_finite_state(model, desc)  # a blow-up on the very last step leaves a finite loss but NaN weights
    frame = pd.DataFrame(history).set_index("epoch")
    frame.attrs["best_epoch"] = best_epoch
    frame.attrs["out_of_time"] = out_of_time
    return frame
