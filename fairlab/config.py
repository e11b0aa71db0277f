"""The one place fairlab reads environment variables.

| variable          | meaning                                         | default                                  |
|-------------------|-------------------------------------------------|------------------------------------------|
| ``FAIRLAB_DATA``  | data root (``MNIST/raw/*.gz``, ``adult/*``)      | ``$XDG_CACHE_HOME/fairlab`` or ``~/.cache/fairlab`` |
| ``FAIRLAB_PROFILE`` | ``quick`` (CI, CPU, minutes) or ``full`` (the paper's protocol, GPU) | ``full`` |
| ``FAIRLAB_DEVICE``  | ``cpu``, ``cuda``, ``cuda:1``, ...              | CUDA if available, else CPU              |
| ``FAIRLAB_PROGRESS`` | ``0`` turns progress bars off                  | on                                       |
| ``FAIRLAB_CHECKPOINTS`` | folder for trained weights (generators) | ``<data root>/checkpoints`` if writable, else ``<user cache>/fairlab/checkpoints`` |

Everything else in the package asks this module; nothing else touches ``os.environ``.
"""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

PROFILES = ("quick", "full")


def data_root() -> Path:
    """Folder holding the data sets (``FAIRLAB_DATA``)."""
    env = os.environ.get("FAIRLAB_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "fairlab"


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fairlab"


def checkpoint_folders() -> list[Path]:
    """Where trained weights are looked for, in order: ``FAIRLAB_CHECKPOINTS`` (if set), ``<data root>/checkpoints``
    (what a course ships, possibly read-only), ``<user cache>/fairlab/checkpoints``."""
    folders = [data_root() / "checkpoints", _user_cache() / "checkpoints"]
    env = os.environ.get("FAIRLAB_CHECKPOINTS")
    if env:
        folders.insert(0, Path(env).expanduser())
    return list(dict.fromkeys(folders))  # the data root may be the user cache: no folder twice


def _writable(folder: Path) -> bool:
    """Whether ``folder`` can be created or written: its nearest existing ancestor is a writable directory."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def checkpoint_root() -> Path:
    """The folder new checkpoints are written to: ``FAIRLAB_CHECKPOINTS`` when set (it must be writable), else the
    first writable of ``<data root>/checkpoints`` and ``<user cache>/fairlab/checkpoints``. A read-only data root
    (a course's shared folder) is never written into."""
    env = os.environ.get("FAIRLAB_CHECKPOINTS")
    candidates = [Path(env).expanduser()] if env else checkpoint_folders()
    for folder in candidates:
        if _writable(folder):
            return folder
    tried = ", ".join(str(f) for f in candidates)
    raise PermissionError(
        f"No writable folder for checkpoints (tried {tried}); a read-only data root is never written into. "
        "Set FAIRLAB_CHECKPOINTS to a folder you can write to."
    )


def profile() -> str:
    """``"quick"`` or ``"full"`` (``FAIRLAB_PROFILE``)."""
    value = os.environ.get("FAIRLAB_PROFILE", "full").strip().lower()
    if value not in PROFILES:
        raise ValueError(f"FAIRLAB_PROFILE={value!r} is not a profile; use one of {PROFILES}.")
    return value


def by_profile(*, quick: Any, full: Any, name: str | None = None) -> Any:
    """Pick the setting for the active profile: ``epochs = by_profile(quick=2, full=100)``.

    ``name`` overrides the environment (the command line's ``--profile``).
    """
    return {"quick": quick, "full": full}[name or profile()]


def device() -> torch.device:
    """The device to train on (``FAIRLAB_DEVICE``), defaulting to CUDA when there is one."""
    requested = os.environ.get("FAIRLAB_DEVICE")
    if requested:
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"FAIRLAB_DEVICE={requested!r} but this machine has no CUDA GPU visible to PyTorch "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Unset FAIRLAB_DEVICE to use "
                "the CPU, or install a CUDA build of torch on a machine with a GPU."
            )
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress_enabled() -> bool:
    """Whether training loops show tqdm bars (``FAIRLAB_PROGRESS=0`` turns them off)."""
    return os.environ.get("FAIRLAB_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so a run repeats."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def run_info() -> str:
    """One line saying how this run was made: profile, device, versions."""
    from fairlab import __version__

    dev = device()
    if dev.type == "cuda":
        dev_name = f"{dev} ({torch.cuda.get_device_name(dev)})"
    else:
        dev_name = f"cpu ({torch.get_num_threads()} threads)"
    return (
        f"fairlab {__version__} | profile={profile()} | device={dev_name} | "
        f"torch {torch.__version__} | python {platform.python_version()} | data={data_root()}"
    )
