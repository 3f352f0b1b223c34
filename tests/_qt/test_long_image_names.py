"""An image file whose name the command line accepts but whose session file names would be
too long (a name may have 255 bytes; the labels' temporary file adds 54 bytes to the session
file's): the dock autosaves under a shortened name, beside the image or in the cache folder,
and a new dock finds it to resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sam_qt_helpers import blob_stack, click_commit, pick_checkpoint

#: 70 CJK characters: 214 bytes with ``.tif`` (the walkthrough's file).
LONG_NAME = "日" * 70 + ".tif"


@pytest.mark.parametrize("writable", [True, False], ids=["beside", "cache"])
def test_a_long_image_name_autosaves_and_resumes(make_widget, tiny_ckpt, tmp_path,
                                                monkeypatch, writable):
    """It said "Autosave to .../日....tif.sam-session.json failed (File name too long);
    autosave is off." (beside the image, then the cache folder's fallback with the same
    name)."""
    import tifffile

    from napari_sam.annotate import session_places
    from napari_sam.session import read_session, session_file_for

    folder = tmp_path / "long"
    folder.mkdir()
    image = folder / LONG_NAME
    tifffile.imwrite(image, blob_stack())
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    if not writable:
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):  # root: chmod does not stop root's writes
            monkeypatch.setattr(session_places, "folder_writable",
                                lambda f: bool(Path(f).stat().st_mode & 0o222))
    try:
        viewer, widget = make_widget()
        pick_checkpoint(widget, tiny_ckpt)
        viewer.open(str(image), plugin="napari")
        viewer.dims.set_point(0, 3)
        status = click_commit(viewer, widget, 20, 20)
        assert "failed" not in status and widget.controller.autosave, status
        saved = (session_file_for(image) if writable
                 else session_places.fallback_session_file(image))
        assert saved.is_file(), sorted(p.name for p in saved.parent.iterdir())
        stem = len(os.fsencode(saved.name)) - len(".sam-session.json")
        assert stem + 54 + len(".session-20") <= 255  # its labels' temporary file, alternate
        assert saved.name.startswith("日" * 10) and saved.name.endswith(
            ".tif.sam-session.json")
        assert len(read_session(saved, load_labels=False).operations) == 1
        # another dock, once this one is closed, offers that session and resumes it
        viewer.window.remove_dock_widget(widget)
        other, w2 = make_widget()
        pick_checkpoint(w2, tiny_ckpt)
        other.open(str(image), plugin="napari")
        assert w2._resume_row.isVisibleTo(w2)
        assert "1 commit" in w2._resume_label.text()
        assert len(w2._on_resume().operations) == 1
    finally:
        folder.chmod(0o755)
