"""docs/gui.md stays true: the keys table is the one the widget binds, the images exist."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_keys_table_matches_bindings():
    from napari_sam._qt.keys import markdown_table

    assert markdown_table() in (DOCS / "gui.md").read_text()


def test_referenced_screenshots_exist():
    text = (DOCS / "gui.md").read_text()
    images = re.findall(r"\]\((images/[^)]+\.png)\)", text)
    assert len(images) >= 4
    missing = [p for p in images if not (DOCS / p).is_file()]
    assert not missing, f"run: xvfb-run -a python docs/make_screenshots.py (missing {missing})"
