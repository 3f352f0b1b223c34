"""Two annotation sessions autosaving the session of one image file (two napari windows, a
dock closed and reopened while the first one's session lives, two viewers of one script):
the second one notices that the file is another live session's and autosaves elsewhere,
saying where; neither writes over the other's commits, and resume finds both."""

from __future__ import annotations

import pytest

from stacks import blob_session


def _commit(s, z: int, r: int, c: int) -> None:
    s.go_to_slice(z)
    s.add_point(z, r, c)
    s.update_preview()
    s.commit()


@pytest.mark.filterwarnings("ignore:Its model 'tiny'")  # (the test model: resumed all the same)
def test_two_sessions_of_one_file_keep_each_others_commits(tiny_sam, tmp_path):
    """Before: at each commit one session kept the other's file aside under a dated name
    and wrote its own log over it (5 dated copies after 6 commits, the file flipping
    between the two logs)."""
    from napari_sam import session as S

    image = tmp_path / "blobs.tif"
    first, second = blob_session(tiny_sam), blob_session(tiny_sam)
    infos = []
    second.notify_info = infos.append
    for s in (first, second):
        s.path = str(image)
    for k in range(3):  # interleaved: first, second, first, ...
        _commit(first, 1 + k, 20, 20)
        _commit(second, 1 + k, 40, 40)
        if k == 0:
            line = second.status
    mine = S.session_file_for(image)
    alternate = tmp_path / "blobs.tif.session-2.sam-session.json"
    assert len(first.log) == len(second.log) == 3
    assert S.read_session(mine).operations == first.log  # each file holds one whole log
    assert S.read_session(alternate).operations == second.log
    assert sorted(f.name for f in tmp_path.glob("*.json")) == sorted([alternate.name, mine.name])
    said = ("The session file {} is being autosaved by another dock (or session) of this "
            "napari: this session is autosaved in {} instead")
    assert said.format(mine.name, f"{alternate.name} beside it") in line  # names: short
    assert [said.format(mine, alternate) in t for t in infos] == [True]  # said once, paths
    assert first.status.startswith("Committed") and "autosaved by" not in first.status
    # the first one done (its dock closed): resume finds the newest, the second's
    first.release_session_file()
    second.release_session_file()
    third = blob_session(tiny_sam)
    third.path = str(image)
    assert third.saved_session_path() == alternate
    assert third.resume().operations == second.log


def test_a_session_of_another_process_keeps_its_file(tiny_sam, tmp_path):
    """The claim is a lock the kernel keeps across processes (and lets go when the
    process ends, even killed)."""
    from napari_sam import session as S
    from session_claim_helpers import another_process_claims

    image = tmp_path / "blobs.tif"
    mine = S.session_file_for(image)
    mine.write_text("{}")  # (stands for the other process's session)
    with another_process_claims(mine, kill=True) as other:
        s = blob_session(tiny_sam)
        s.path = str(image)
        _commit(s, 2, 20, 20)
        assert mine.read_text() == "{}"  # not written over, nor kept aside
        alternate = tmp_path / "blobs.tif.session-2.sam-session.json"
        assert S.read_session(alternate).operations == s.log
        assert f"autosaved by napari-sam process {other.pid}: this session is autosaved " \
            f"in {alternate.name} beside it instead" in s.status
    _commit(s, 3, 30, 30)  # still its own file: it holds that one now
    assert S.read_session(alternate).operations == s.log and mine.read_text() == "{}"
