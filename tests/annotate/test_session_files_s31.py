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
