"""The one place fairlab reads environment variables.

| variable          | meaning                                         | default                                  |
|-------------------|-------------------------------------------------|------------------------------------------|
| ``FAIRLAB_DATA``  | data root (``MNIST/raw/*.gz``, ``adult/*``)      | ``$XDG_CACHE_HOME/fairlab`` or ``~/.cache/fairlab`` |
| ``FAIRLAB_PROFILE`` | ``quick`` (CI, CPU, minutes) or ``full`` (the paper's protocol, GPU) | ``full`` |
| ``FAIRLAB_DEVICE``  | ``cpu``, ``cuda``, ``cuda:1``, ...              | CUDA if available, else CPU              |
| ``FAIRLAB_PROGRESS`` | ``0`` turns progress bars off                  | on                                       |
| ``FAIRLAB_DEBUG``    | ``1``: the command line shows tracebacks        | off                                      |
| ``FAIRLAB_CHECKPOINTS`` | folder trained weights (generators) are written to | ``<user cache>/fairlab/checkpoints`` (``<data root>/checkpoints`` is read, never written) |

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

from fairlab.errors import CheckpointFolderError, DeviceError

PROFILES = ("quick", "full")
DEVICE_TYPES = ("cpu", "cuda", "mps")
_SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


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
    """The folder new checkpoints are written to: ``FAIRLAB_CHECKPOINTS`` when set, else
    ``<user cache>/fairlab/checkpoints``. The data root is only ever read: it may be a course's shared, read-only
    folder, and a process running as root would be *allowed* to write there, so permissions cannot be the test."""
    env = os.environ.get("FAIRLAB_CHECKPOINTS")
    folder = Path(env).expanduser() if env else _user_cache() / "checkpoints"
    if not _writable(folder):
        raise CheckpointFolderError(
            f"Cannot write checkpoints to {folder}. Set FAIRLAB_CHECKPOINTS to a folder you can write to "
            "(the data root is never written into)."
        )
    return folder


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
    requested = os.environ.get("FAIRLAB_DEVICE", "").strip()
    if requested:
        return parse_device(requested, "FAIRLAB_DEVICE")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(requested: str, source: str = "FAIRLAB_DEVICE") -> torch.device:
    """``requested`` as a device this machine has, or a ``DeviceError`` naming where it came from (``source``: the
    variable or the option) and how to fix it. Cheap: call it before building any data."""
    choose = f"give cpu, cuda or cuda:<index>, or leave {source} unset to let fairlab choose"
    try:
        dev = torch.device(requested.strip().lower())
    except (RuntimeError, ValueError):  # torch's message never names the variable
        raise DeviceError(f"{source}={requested!r} is not a device: {choose}.") from None
    if dev.type not in DEVICE_TYPES:
        raise DeviceError(f"{source}={requested!r}: fairlab trains on {', '.join(DEVICE_TYPES)}; {choose}.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"{source}={requested!r} but this machine has no CUDA GPU visible to PyTorch "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Set {source}=cpu or leave it "
                "unset to use the CPU, or install a CUDA build of torch on a machine with a GPU."
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"{source}={requested!r} but this machine has {count} CUDA GPU(s), "
                              f"cuda:0 to cuda:{count - 1}; {choose}.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{source}={requested!r} but PyTorch sees no Apple GPU (MPS) here; {choose}.")
    return dev


def _switch(name: str, default: bool) -> bool:
    """An on/off environment variable: 1/0, true/false, yes/no, on/off (unset or empty: ``default``)."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value not in _SWITCH:
        raise ValueError(f"{name}={os.environ[name]!r} is not a switch; use 1 or 0 (or true/false, yes/no, on/off).")
    return _SWITCH[value]


def progress_enabled() -> bool:
    """Whether training loops show tqdm bars (``FAIRLAB_PROGRESS=0`` turns them off)."""
    return _switch("FAIRLAB_PROGRESS", True)


def debug() -> bool:
    """Whether the command line shows the traceback of an error (``FAIRLAB_DEBUG=1``), not only its message."""
    return _switch("FAIRLAB_DEBUG", False)


def check_environment() -> None:
    """Read every ``FAIRLAB_*`` variable once, so that a bad value fails before any data is built."""
    profile()
    device()
    progress_enabled()
    debug()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so a run repeats."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def describe_device(dev: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (2 threads)``: a device as a run's record names it."""
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def run_info() -> str:
    """One line saying how this run was made: profile, device, versions. Not the data folder: that is a path on one
    machine, and the data are checked by their md5 sums wherever they are."""
    from fairlab import __version__

    return (
        f"fairlab {__version__} | profile={profile()} | device={describe_device(device())} | "
        f"torch {torch.__version__} | python {platform.python_version()}"
    )
