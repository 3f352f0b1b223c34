"""Session files another live session autosaves in (:mod:`napari_sam.annotate.
live_session_files`): an explicit load or save of one is refused, naming the file, who writes
it and what to do, and changes nothing; a session whose autosave is off holds no claim."""

from __future__ import annotations

import os

import pytest

from napari_sam import session as S
from napari_sam.annotate.errors import UserError
from napari_sam.annotate.session_claims import alternate_session_file, claimed
from session_claim_helpers import another_process_claims, commit_at, on_image
from stacks import blob_session


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.filterwarnings("ignore:Its model 'tiny'")
def test_loading_another_live_sessions_file_is_refused_and_changes_nothing(tiny_sam, tmp_path):
    """Before: the second session loaded the first's live file and went on with its log in
    ``.session-2`` while the first went on in the file: one log, two diverging files."""
    image = tmp_path / "blobs.tif"
    first = on_image(blob_session(tiny_sam), image)
    commit_at(first, 1, 20, 20)
    live = first.autosave_path()
    second = on_image(blob_session(tiny_sam), image)
    before = _files(tmp_path)
    with pytest.raises(UserError, match=(
            rf"Not loaded: {live} is being autosaved by another dock \(or session\) of this "
            r"napari right now: .*Close that dock \(or that napari\) first, then load it here; "
            r"to work on a copy beside it, save one with that dock's 'Save session\.\.\.' "
            r"and load the copy\. Nothing was changed\.")):
        second.load_session(live)
    assert _files(tmp_path) == before  # nothing written
    assert second.log == [] and second.target_labels() is None and second.session_path is None
    commit_at(second, 2, 40, 40)  # its own log, in its own (alternate) file
    commit_at(first, 3, 20, 20)
    assert S.read_session(live).operations == first.log and len(first.log) == 2
    other = S.read_session(alternate_session_file(live, 2)).operations
    assert other == second.log and len(other) == 1  # (not the first's commit too)
    first.release_session_file()  # its dock closed: the file may be loaded now
    assert len(second.load_session(live).operations) == 2


@pytest.mark.filterwarnings("ignore:Its model 'tiny'")
def test_loading_a_file_another_process_autosaves_in_is_refused(tiny_sam, tmp_path):
    image = tmp_path / "blobs.tif"
    first = on_image(blob_session(tiny_sam), image)
    commit_at(first, 1, 20, 20)
    live = first.autosave_path()
    first.release_session_file()
    second = on_image(blob_session(tiny_sam), image)
    with another_process_claims(live) as other:
        before = _files(tmp_path)
        with pytest.raises(UserError, match=rf"Not loaded: {live} is being autosaved by "
                                            rf"napari-sam process {other.pid} right now"):
            second.load_session(live)
        assert _files(tmp_path) == before and second.log == []
    assert len(second.load_session(live).operations) == 1  # its process ended


def test_saving_over_another_live_sessions_file_is_refused(tiny_sam, tmp_path):
    """Before: 'Save session...' wrote the second session over the first's live autosave
    (and the first's next autosave replaced it again)."""
    image = tmp_path / "blobs.tif"
    first = on_image(blob_session(tiny_sam), image)
    commit_at(first, 1, 20, 20)
    live = first.autosave_path()
    second = on_image(blob_session(tiny_sam), image)
    commit_at(second, 2, 40, 40)
    before = live.read_bytes()
    with pytest.raises(UserError, match=rf"Not saved: {live} is being autosaved by another "
                                        r"dock .*Save under another name, or close that dock "
                                        r"\(or that napari\) first\. Nothing was written\."):
        second.save_session(live)
    assert live.read_bytes() == before
    assert second.save_session(tmp_path / "copy.json").is_file()  # elsewhere: saved
    assert first.save_session(live) == live  # its own file: saved


@pytest.mark.filterwarnings("ignore:Its model 'tiny'")
def test_resuming_with_autosave_off_leaves_the_file_to_another_session(tiny_sam, tmp_path):
    """Before: a session resumed with autosave off claimed the file it never writes: no other
    dock was offered it, nor could load it, until that dock closed."""
    image = tmp_path / "blobs.tif"
    earlier = on_image(blob_session(tiny_sam), image)
    commit_at(earlier, 1, 20, 20)
    earlier.release_session_file()  # (its dock closed)
    file = earlier.autosave_path()
    quiet = on_image(blob_session(tiny_sam), image)
    quiet.autosave = False
    assert len(quiet.resume().operations) == 1
    assert not claimed(file)
    other = on_image(blob_session(tiny_sam), image)
    assert other.saved_session_path() == file  # offered, and resumed
    assert len(other.resume().operations) == 1
    commit_at(other, 2, 40, 40)
    assert len(S.read_session(file).operations) == 2
    quiet.autosave = True  # on again: its next autosave goes beside the other's, and says so
    commit_at(quiet, 3, 20, 20)
    assert len(S.read_session(file).operations) == 2
    assert len(S.read_session(alternate_session_file(file, 2)).operations) == 2
    assert "is being autosaved by another dock" in quiet.status


def test_turning_autosave_off_lets_the_file_go(tiny_sam, tmp_path):
    image = tmp_path / "blobs.tif"
    s = on_image(blob_session(tiny_sam), image)
    commit_at(s, 1, 20, 20)
    file = s.autosave_path()
    assert claimed(file)
    s.autosave = False
    assert not claimed(file) and not os.path.exists(file.with_name(f".{file.name}.lock"))
    with another_process_claims(file):  # another napari may autosave there now
        s.autosave = True
        commit_at(s, 2, 40, 40)
        assert len(S.read_session(alternate_session_file(file, 2)).operations) == 2
    assert len(S.read_session(file).operations) == 1
