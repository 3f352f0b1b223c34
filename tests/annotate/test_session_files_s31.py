"""Session files from the dock's session (helper walk-through, session 31): a save under a
path whose folder is a file says so, and loading the same session twice is not refused for
prompts that are its own."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate.errors import UserError


def test_saving_where_a_folder_of_the_path_is_a_file_names_that_file(session, tmp_path):
    blocker = tmp_path / "labels.npy"
    blocker.write_bytes(b"not a folder")
    with pytest.raises(UserError) as err:
        session.save_session(blocker / "x.json")
    text = str(err.value)
    assert f"{blocker} is a file, not a folder" in text and "File exists" not in text
    assert blocker.read_bytes() == b"not a folder"


def test_loading_the_same_session_twice_keeps_its_own_prompts(session, tmp_path):
    session.add_point(3, 20, 20)
    session.update_preview()
    session.commit()
    session.add_point(3, 44, 44)  # left uncommitted
    path = session.save_session(tmp_path / "work.json")
    session.load_session(path)
    session.load_session(path)  # again, nothing done between: its prompts are on the image
    points = session.prompt_arrays()[0]
    np.testing.assert_array_equal(points[:, 1:], [[44, 44]])
    assert session.status.startswith("Loaded the session work.json")


def test_loading_a_session_over_other_prompts_is_still_refused(session, tmp_path):
    session.add_point(3, 44, 44)
    path = session.save_session(tmp_path / "work.json")
    session.clear_prompts()
    session.add_point(3, 20, 20)  # other work, not in the file
    with pytest.raises(UserError, match="those on the image now would be lost"):
        session.load_session(path)


def test_a_parent_that_cannot_be_looked_at_gives_the_os_reason(session, tmp_path, monkeypatch):
    """Looking for a file in the way must not raise itself (the reviewer's catch: a folder
    the user cannot enter made Path.exists raise PermissionError out of the handler)."""
    import errno
    from pathlib import Path

    import napari_sam.session as S

    def refused(*args, **kwargs):
        raise OSError(errno.EEXIST, "File exists")

    def no_entry(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(S, "write_session", refused)
    monkeypatch.setattr(Path, "exists", no_entry)
    with pytest.raises(UserError, match="File exists. Pick a folder you can write to"):
        session.save_session(tmp_path / "locked" / "sub" / "x.json")


def test_loading_twice_a_session_whose_box_napari_holds_in_float32(session, tmp_path):
    """The box 10.11 comes back from napari's layers as 10.109999656677246: still the
    session's own prompts (the reviewer's catch: the second load was refused)."""
    session.add_box(3, 10.11, 12.7, 30.9, 33.3)
    path = session.save_session(tmp_path / "work.json")
    session.clear_prompts()
    session.load_session(path)
    boxes = np.asarray(session.prompt_arrays()[2], np.float32).astype(np.float64)
    session.set_prompts(np.zeros((0, 3)), [], boxes)  # as napari's Shapes layer holds it
    session.load_session(path)
    assert session.status.startswith("Loaded the session work.json")
