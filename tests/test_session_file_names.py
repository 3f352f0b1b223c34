"""Session file names of images with long names (``napari_sam.session.fit_file_name``): short
enough for the names made from them, the same every time, and one per image."""

from __future__ import annotations

import os

from napari_sam.session import fit_file_name, session_file_for


def test_long_image_names_get_short_stable_distinct_session_files(tmp_path):
    short = tmp_path / "stack.tif"
    assert session_file_for(short) == tmp_path / "stack.tif.sam-session.json"  # as before
    a, b = "日" * 70 + "a.tif", "日" * 70 + "b.tif"  # differ near the end only
    names = [session_file_for(tmp_path / n).name for n in (a, b, a)]
    assert names[0] == names[2] != names[1]
    for name in names:
        stem = name[: -len(".sam-session.json")]
        assert len(os.fsencode(stem)) + 54 + len(".session-20") <= 255
        assert stem.startswith("日" * 20) and stem.endswith(".tif")
    assert fit_file_name("🦠" * 100, 41).startswith("🦠" * 7 + "~")  # whole characters
    assert len(os.fsencode(fit_file_name("🦠" * 100, 41))) <= 41


def test_a_session_saved_under_the_whole_name_before_is_still_found(tmp_path):
    """An image name of 191-201 bytes autosaved under its whole name before names were
    fitted (reviewer 158: such sessions were no longer offered to resume)."""
    name = "n" * 195 + ".tif"
    image = tmp_path / name
    assert session_file_for(image).name != name + ".sam-session.json"  # fitted now
    whole = tmp_path / (name + ".sam-session.json")
    whole.write_text("{}")
    assert session_file_for(image) == whole
    fitted = tmp_path / (fit_file_name(name) + ".sam-session.json")
    fitted.write_text("{}")  # autosaved under the fitted name since (reviewer 162)
    assert session_file_for(image) == fitted
    assert session_file_for(tmp_path / ("日" * 90 + ".tif")).name.count("~") == 1  # no such file
