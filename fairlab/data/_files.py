"""Finding, checking and downloading the raw files of a data set (torchvision-style: md5 sums, one clear error)."""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fairlab import config
from fairlab.errors import DatasetNotFoundError  # noqa: F401  (raised here; importable from fairlab.data)


def md5sum(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    """The process's file-creation mask (os.umask can only be read by setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _download(urls: Sequence[str], target: Path, md5: str) -> None:
    """Fetch ``target`` from the first mirror that answers, check its md5, then move it in place atomically."""
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            got = md5sum(Path(tmp))
            if got != md5:
                errors.append(f"{url}: md5 {got} != expected {md5}")
                continue
            # mkstemp creates the file readable by its owner only (0600); a data file gets the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
            return
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DatasetNotFoundError(
        f"Could not download {target.name} into {target.parent}:\n  " + "\n  ".join(errors) + "\n"
        "If this machine is offline, copy the file there yourself, or point FAIRLAB_DATA at a folder "
        "that already holds it."
    )


def ensure_files(
    name: str,
    folder: Path,
    resources: Sequence[tuple[str, str]],
    mirrors: Sequence[str],
    download: bool = True,
) -> Path:
    """Make sure ``folder`` holds every ``(filename, md5)`` of ``resources``; download the missing ones.

    A file that is present but has the wrong md5 is never used: it is reported (and replaced when downloading).
    Returns ``folder``.
    """
    folder = Path(folder)
    missing, corrupted = [], []
    for filename, md5 in resources:
        path = folder / filename
        if not path.exists():
            missing.append(filename)
        elif md5sum(path) != md5:
            corrupted.append(filename)
    if not missing and not corrupted:
        return folder

    listing = "\n".join(f"  {folder / f}  (md5 {m})" for f, m in resources)
    problem = []
    if missing:
        problem.append("missing: " + ", ".join(missing))
    if corrupted:
        problem.append("corrupted (md5 mismatch): " + ", ".join(corrupted))
    hint = (
        f"{name} not found or corrupted under the data root {config.data_root()} ({'; '.join(problem)}).\n"
        f"fairlab expects these files:\n{listing}\n"
        "Set FAIRLAB_DATA to a folder that holds them"
    )
    if not download:
        raise DatasetNotFoundError(hint + ", or pass download=True.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetNotFoundError(hint + f". The data folder cannot be created ({e}); choose a writable one.") from e
    if not os.access(folder, os.W_OK):
        raise DatasetNotFoundError(
            hint + f". The data folder {folder} is read-only, so the files cannot be downloaded into it; "
            "point FAIRLAB_DATA at a writable folder."
        )
    for filename, md5 in resources:
        if filename in missing or filename in corrupted:
            try:
                _download([m + filename for m in mirrors], folder / filename, md5)
            except DatasetNotFoundError as e:
                raise DatasetNotFoundError(f"{hint}.\n{e}") from None
    return folder


# What a pickled NumPy array needs to be rebuilt, and nothing else: the array's and the dtype's constructors
# (under NumPy 1's module name and NumPy 2's) and the scalar constructor (a 0-d value). Dicts, lists, tuples,
# strings and numbers are pickle opcodes, built without find_class.
_NUMPY_REBUILDERS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy.core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
    ("numpy._core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than NumPy's array constructors: it was refused, nothing was run."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds NumPy arrays inside plain containers and refuses every other class or function.

    A pickle is a program: ``pickle.load`` (and ``np.load(..., allow_pickle=True)``) calls whatever the file names,
    ``os.system`` included. Here the only callables a file may name are NumPy's array, dtype and scalar
    constructors, looked up in a fixed table (the module named in the file is never imported).
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _NUMPY_REBUILDERS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refused to load {module}.{name}: only NumPy arrays may be inside") from None


def load_pickled_npy(path: Path) -> Any:
    """The object stored in a ``.npy`` file that ``np.save`` wrote with a pickled object array (e.g. a dict of
    arrays), read without running code from the file: the header is parsed by NumPy, the rest by
    ``NumpyOnlyUnpickler``. A 0-d object array (what ``np.save(path, some_dict)`` writes) gives back the object.

    ``encoding="latin1"`` reads pickles written by Python 2 (byte strings inside NumPy arrays stay bytes).
    Raises ``UnsafePickleError`` for a forbidden class, ``ValueError``/``pickle.UnpicklingError``/``EOFError`` for a
    file that is not such an array.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        if not dtype.hasobject:
            raise ValueError(f"expected a pickled object array, found a plain {dtype} array of shape {shape}")
        array = NumpyOnlyUnpickler(f, encoding="latin1").load()
    if not isinstance(array, np.ndarray) or array.dtype != object:
        raise ValueError(f"the pickle holds a {type(array).__name__}, not an object array")
    return array.item() if array.ndim == 0 else array
