"""MNIST, read from the original ``*-ubyte.gz`` files (the layout torchvision uses: ``<root>/MNIST/raw/``)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from fairlab import config
from fairlab.data._files import ensure_files

# the same files and md5 sums as torchvision.datasets.MNIST.resources
RESOURCES = {
    "train": [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ],
    "test": [
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ],
}
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic, then one int32 per dimension)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte entries, the only type MNIST uses
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x}).")
    ndim = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist_folder(root: Path | str | None = None) -> Path:
    return Path(root or config.data_root()) / "MNIST" / "raw"


def load_mnist(split: str = "train", root: Path | str | None = None, download: bool = True):
    """Return ``(images, labels)``: uint8 tensors of shape (N, 28, 28) and int64 (N,), in dataset order."""
    if split not in RESOURCES:
        raise ValueError(f"MNIST split must be 'train' or 'test', got {split!r}.")
    folder = ensure_files("MNIST", mnist_folder(root), RESOURCES["train"] + RESOURCES["test"], MIRRORS, download)
    (images_file, _), (labels_file, _) = RESOURCES[split]
    images = torch.from_numpy(_read_idx(folder / images_file).copy())
    labels = torch.from_numpy(_read_idx(folder / labels_file).astype(np.int64))
    return images, labels
