"""Shared fixtures. Tests read data from FAIRLAB_DATA (CI: ../shared/data); without the files they are skipped
with the reason, never silently passed."""
import os
from pathlib import Path

import pytest

# the course's CI layout: the repository with shared/ beside it
_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "FAIRLAB_DATA" not in os.environ and _SHARED.exists():
    os.environ["FAIRLAB_DATA"] = str(_SHARED)
os.environ.setdefault("FAIRLAB_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")


def _have_data() -> bool:
    from fairlab.data.check import check_data, data_complete

    return data_complete(check_data())  # Kim's released files are optional: their absence skips nothing


needs_data = pytest.mark.skipif(not _have_data(), reason="MNIST/Adult files not found under FAIRLAB_DATA")


def prepared(argv, monkeypatch):
    """The options ``python -m fairlab run ...`` trains with (nothing is built; the environment is restored)."""
    from fairlab.cli import build_parser, prepare

    for name in ("FAIRLAB_PROFILE", "FAIRLAB_DEVICE"):
        monkeypatch.setenv(name, "")  # prepare() writes --profile into the environment: undone after the test
    monkeypatch.setenv("FAIRLAB_PROFILE", "full")
    args = build_parser().parse_args(argv)
    record, hp = prepare(args)
    return args, hp
