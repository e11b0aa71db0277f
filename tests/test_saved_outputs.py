"""What a reader gets from the saved notebooks, checked without running them: no warnings printed to stderr, no
progress-bar widgets (hidden ones still leave blank gaps in the book), and none of the words of the workshop in
student text (the chapters and the book's pages speak to the reader, not about how they were made)."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))

# phrases that belong to the making of the course, not to its subject
WORKSHOP = [r"\bthe brief\b", r"\bbrief's\b", r"\bour brief\b", r"not available to us", r"other jobs",
            r"were not finished", r"/work/", r"/tmp/", r"\bTODO\b", r"\bFIXME\b", r"\bissue \d+", r"\bsession\b"]


def _markdown(path: Path) -> list[str]:
    if path.suffix == ".md":
        return [path.read_text()]
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_warnings_and_no_progress_bars_in_saved_outputs(path):
    notebook = json.loads(path.read_text())
    for k, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = "".join(output["text"])
                assert "Warning" not in text, f"cell {k} printed a warning: {text[:200]}"
    state = notebook["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    progress = [key for key, model in state.get("state", {}).items() if "Progress" in model.get("model_name", "")]
    assert not progress, f"{len(progress)} progress-bar widgets saved (execute with FAIRLAB_PROGRESS=0)"


@pytest.mark.parametrize("path", NOTEBOOKS + PAGES, ids=lambda p: p.name)
def test_student_text_has_no_workshop_words(path):
    for k, text in enumerate(_markdown(path)):
        for pattern in WORKSHOP:
            match = re.search(pattern, text, flags=re.IGNORECASE)
            context = text[max(0, match.start() - 60):match.end() + 40] if match else ""
            assert match is None, f"{path.name}, cell {k}: {match.group(0)!r} in {context!r}"
