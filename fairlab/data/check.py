"""``python -m fairlab data check``: is every raw file there, with the right md5?

Kim et al.'s released Coloured MNIST files are *optional*: they are downloaded by hand (``KIM_DATA_URL``), and
without them ``coloured_mnist("kim", ...)`` builds its reconstruction. A missing optional file is reported, never a
failure. Their md5 sums are not known to us, so a present file is checked when it is read (keys, shapes, dtypes).
"""
from __future__ import annotations

from pathlib import Path

from fairlab import config
from fairlab.data.adult import RESOURCES as ADULT_RESOURCES
from fairlab.data.coloured_mnist import KIM_RELEASED_VARIANCES, kim_filename, kim_folder
from fairlab.data.mnist import RESOURCES as MNIST_RESOURCES, mnist_folder
from fairlab.data._files import md5sum


def check_data(root=None) -> list[dict]:
    """One row per expected file: path, status ("ok", "missing", "corrupted"), md5 and ``optional``.

    A row with ``optional=True`` (Kim's released files) never makes the data incomplete: ``data_complete`` ignores it.
    """
    root = Path(root or config.data_root())
    expected = [(mnist_folder(root), r) for r in MNIST_RESOURCES["train"] + MNIST_RESOURCES["test"]]
    expected += [(root / "adult", r) for r in ADULT_RESOURCES]
    rows = []
    for folder, (filename, md5) in expected:
        path = folder / filename
        status = "missing" if not path.exists() else ("ok" if md5sum(path) == md5 else "corrupted")
        rows.append({"path": str(path), "status": status, "md5": md5, "optional": False})
    for variance in KIM_RELEASED_VARIANCES:
        path = kim_folder(root) / kim_filename(variance)
        rows.append({"path": str(path), "status": "ok" if path.exists() else "missing", "md5": None, "optional": True})
    return rows


def data_complete(rows: list[dict]) -> bool:
    """Whether every required file of ``check_data``'s rows is there and intact."""
    return all(row["status"] == "ok" for row in rows if not row["optional"])
