"""Frozen generators: trained once, saved, and loaded again by every later run that asks for the same one.

A generator is keyed by the data it was trained on (name, size, protocol settings), its settings and its seed; the
checkpoint is looked for in every folder of ``config.checkpoint_folders()`` and written to
``config.checkpoint_root()`` (never into the data root). The fair latent space (chapter 5) sits on one.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from fairlab import config
from fairlab.data.base import BiasedDataset
from fairlab.models.generator import ConvVAE, TabularVAE
from fairlab.train import fit, load_checkpoint, make_step, model_device, save_checkpoint


# small trained models that come with the package, made by the commands named where they are used
SHIPPED = Path(__file__).resolve().parent / "checkpoints"


class CheckpointMismatchError(ValueError):
    """A checkpoint was written with other settings than requested."""


def tabular_layout(feature_names) -> tuple[int, list[int]]:
    """(number of continuous columns, size of each one-hot field) of
    an encoding like Adult's: continuous names first, then one block
    ``field_value`` per categorical field."""
    fields: list[str] = []
    for name in feature_names:
        if "_" in name:
            fields.append(name.split("_", 1)[0])
        elif fields:
            raise ValueError(f"continuous column {name!r} after a "
                             "one-hot field: expected them first.")
    continuous = len(feature_names) - len(fields)
    sizes = [fields.count(f) for f in dict.fromkeys(fields)]
    return continuous, sizes


def build_generator(data: BiasedDataset, settings: dict) -> nn.Module:
    """A ConvVAE for images (x of shape (N, C, H, W)), a TabularVAE for
    records (x of shape (N, F) with ``info["feature_names"]``)."""
    if data.x.ndim == 4:
        return ConvVAE(tuple(data.x.shape[1:]), settings["latent_dim"],
                       settings["channels"], settings["hidden"],
                       settings["beta"])
    continuous, categories = tabular_layout(data.info["feature_names"])
    return TabularVAE(continuous, categories, settings["latent_dim"],
                      settings["hidden"], settings["beta"])


def generator_key(data: BiasedDataset, settings: dict,
                  seed: int = 0) -> dict:
    """What a generator checkpoint is keyed by: the training data (its
    name, size and protocol settings), the generator's settings, the
    seed. Plain JSON values, so the checkpoint loads weights-only."""
    info = {k: v for k, v in data.info.items()
            if isinstance(v, (str, int, float, bool, type(None)))}
    key = {"data": {"name": data.name, "n": len(data), **info},
           "generator": settings, "seed": seed}
    return json.loads(json.dumps(key, sort_keys=True))


def checkpoint_name(key: dict, kind: str = "generator") -> str:
    """``<kind>-<data set>-<hash of the key>.pt``."""
    digest = hashlib.sha1(
        json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    data = key["data"]["name"].replace("/", "-")
    return f"{kind}-{data}-{digest}.pt"


def save_generator(model: nn.Module, key: dict, path, *,
                   seconds: float, device: str) -> None:
    """The weights, the key they were trained with, and the training
    time, written atomically."""
    state = {"key": key, "model": model.state_dict(),
             "seconds": float(seconds), "device": device}
    save_checkpoint(state, path)


def load_generator(model: nn.Module, key: dict, path) -> dict:
    """Load a checkpoint into ``model`` (``weights_only=True``); refuse
    it, with the difference, when it was trained with another key."""
    state = load_checkpoint(path)
    if state.get("key") != key:
        stored = state.get("key") or {}
        diff = {part: (stored.get(part), key[part]) for part in key
                if stored.get(part) != key[part]}
        raise CheckpointMismatchError(
            f"{path} was trained with other settings (stored, "
            f"requested): {diff}. Delete it or change the settings.")
    model.load_state_dict(state["model"])
    return state


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode and no gradients: the generator stays as it is."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass
class Generator:
    """A frozen generator and where it came from."""

    model: nn.Module
    path: Path
    loaded: bool  # True: read from a checkpoint; False: trained now
    seconds: float  # what training it took (now or when saved)
    device: str  # where it was trained


def pretrained_generator(
    data: BiasedDataset, settings: dict, *, seed: int = 0,
    device=None, progress: bool | None = None,
) -> Generator:
    """Load the generator for ``data`` and ``settings`` from the first
    checkpoint folder that has it (``config.checkpoint_folders()``);
    train it and save it to ``config.checkpoint_root()`` when none
    has. Returned frozen, on ``device``."""
    device = torch.device(device) if device else config.device()
    key = generator_key(data, settings, seed)
    name = checkpoint_name(key)
    config.seed_everything(seed)
    model = build_generator(data, settings)
    for folder in config.checkpoint_folders():
        if (folder / name).is_file():
            state = load_generator(model, key, folder / name)
            return Generator(freeze(model.to(device)), folder / name,
                             True, state["seconds"], state["device"])
    path = config.checkpoint_root() / name  # fails early if unwritable
    seconds = train_generator(model, data, settings, device=device,
                              progress=progress)
    save_generator(model, key, path, seconds=seconds,
                   device=device_name(device))
    return Generator(freeze(model), path, False, seconds,
                     device_name(device))


def train_generator(model: nn.Module, data: BiasedDataset,
                    settings: dict, *, device=None,
                    progress: bool | None = None) -> float:
    """Maximise the ELBO with Adam; return the wall-clock seconds."""
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    step = make_step(model, lambda m, b: m.loss(b.x), optimizer)
    start = time.perf_counter()
    fit(model, data, step, epochs=settings["epochs"],
        batch_size=settings["batch_size"], device=device,
        progress=progress, desc="generator")
    synchronize(model_device(model))
    return time.perf_counter() - start


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def encode(generator: nn.Module, data: BiasedDataset,
           batch_size: int = 2048) -> BiasedDataset:
    """The data set with x replaced by the encoder's mean z: (N, D),
    on the generator's device. Labels and groups are kept."""
    device = model_device(generator)
    on = data.to(device)
    z = torch.cat([generator.encode(b.x)[0]
                   for b in on.batches(batch_size)])
    return replace(on, x=z, name=f"{data.name} (z)")
