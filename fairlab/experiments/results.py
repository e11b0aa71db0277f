"""A sweep's results file (``RESULTS.jsonl``, written by ``python -m fairlab sweep``) read back as the table a chapter
builds from: one row per run, its metrics beside the options it was trained with.

    from fairlab.experiments import read_results
    runs = read_results("runs/signal_is_harder/RESULTS.jsonl")
    runs.groupby(["method", "bias_conflicting_ratio"])["conflicting_accuracy"].agg(["mean", "std"])

A line that is not JSON stops the reading with its line number: a table quietly missing a run would look complete.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def read_lines(path) -> list[dict]:
    """Every line of a results file as a dict, in file order; an empty list when the file does not exist yet.

    Raises ``ValueError`` naming the first line that is not a JSON object (a run killed while writing it, a hand
    edit), so that neither a resumed sweep nor a chapter's table goes on without it.
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number} is not JSON ({error.msg}): {line.strip()[:60]!r}; "
                                 "delete or repair that line (its run is then trained again).") from None
            if not isinstance(record, dict) or "status" not in record:
                raise ValueError(f"{path} line {number} is not a run's record (a JSON object with a status); "
                                 "delete or repair that line.")
            records.append(record)
    return records


def read_results(path, *, include_failed: bool = False) -> pd.DataFrame:
    """The finished runs of a results file as a DataFrame: one row per run with the keys of ``fairlab run``'s JSON
    line, each option it trained with as a column (where no metric has that name) and where it came from
    (``git_commit``, ``device``, ``versions``).

    ``include_failed``: also the lines of failed attempts (``status == "failed"``, with ``error``). The path is kept
    in ``frame.attrs["source"]``, so a chapter can say where its numbers came from.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"no results file at {path}; run the sweep first (python -m fairlab sweep SPEC).")
    records = read_lines(path)
    if not include_failed:
        records = [r for r in records if r["status"] == "ok"]
    rows = []
    for record in records:
        row = dict(record)
        for name, value in record.get("options", {}).items():
            row.setdefault(name, value)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["source"] = str(path)
    return frame
