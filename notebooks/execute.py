"""Execute chapter notebooks in place, the way the committed outputs are made.

    FAIRLAB_PROFILE=full python notebooks/execute.py notebooks/01_when_the_data_lies.ipynb

Runs every cell with nbclient in the current Python environment, saves outputs and the ipywidgets state (so the
built book can show widgets without a kernel), and stops at the first error (``--allow-errors``: runs on and saves).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int = 3600, allow_errors: bool = False) -> float:
    # The kernel must draw figures into the saved outputs with its inline backend; a non-interactive MPLBACKEND
    # inherited from the caller (the Makefile exports Agg for the tests) would leave every figure out of the book.
    os.environ.pop("MPLBACKEND", None)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True, allow_errors=allow_errors,
    )
    start = time.perf_counter()
    client.execute()
    drop_unused_widget_state(notebook)
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def drop_unused_widget_state(notebook) -> None:
    """Remove saved widget state that no output shows. nbclient keeps the state of an earlier execution when this one
    made no widget (progress bars of a run with them on, say): models nobody displays, only weight in the file."""
    views = [output for cell in notebook.cells for output in cell.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in output.get("data", {})]
    if not views:
        notebook.metadata.pop("widgets", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--allow-errors", action="store_true",
                        help="run every cell and save the notebook even when a cell fails (to inspect a long run)")
    args = parser.parse_args()
    for path in args.notebooks:
        seconds = execute(path, args.timeout, args.allow_errors)
        print(f"{path}: executed in {seconds:.0f} s")


if __name__ == "__main__":
    main()
