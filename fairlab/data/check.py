"""``python -m fairlab data check``: is every raw file there, with the right md5?"""
from __future__ import annotations

from pathlib import Path

from fairlab import config
from fairlab.data.adult import RESOURCES as ADULT_RESOURCES
from fairlab.data.mnist import RESOURCES as MNIST_RESOURCES, mnist_folder
from fairlab.data._files import md5sum


def check_data(root=None) -> list[dict]:
    """One row per expected file: path, status ("ok", "missing", "corrupted")."""
    root = Path(root or config.data_root())
    expected = [(mnist_folder(root), r) for r in MNIST_RESOURCES["train"] + MNIST_RESOURCES["test"]]
    expected += [(root / "adult", r) for r in ADULT_RESOURCES]
    rows = []
    for folder, (filename, md5) in expected:
        path = folder / filename
        status = "missing" if not path.exists() else ("ok" if md5sum(path) == md5 else "corrupted")
        rows.append({"path": str(path), "status": status, "md5": md5})
    return rows
