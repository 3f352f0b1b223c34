"""Resume and the claims of live sessions (:mod:`napari_sam.annotate.session_claims`): a
session is not offered the file another live session autosaves in (resuming it forked that
log into two files), a session resumed from an alternate file goes on there, an alternate
of another channel layer of the file is not this image's, and a session that moves to
another image lets the last image's file go at once."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate.errors import UserError
from session_claim_helpers import another_process_claims, commit_at, on_image
from stacks import blob_session, blob_stack


@pytest.mark.filterwarnings("ignore:Its model 'tiny'")
def test_a_live_sessions_file_is_not_offered_to_a_second_session(tiny_sam, tmp_path):
    """Before: the second session was offered (and resumed) the first's live file; its
    commits went into ``.session-2`` while the first's went on in the file: one log, two
    diverging files."""
    from napari_sam import session as S

    image = tmp_path / "blobs.tif"
    first = on_image(blob_session(tiny_sam), image)
    commit_at(first, 1, 20, 20)
    second = on_image(blob_session(tiny_sam), image)
    offers = []
    second.notify_resume = lambda path, summary: offers.append(path)
    assert second.saved_session_path() is None and second.offer_resume() is None
    assert offers == []
    with pytest.raises(UserError, match=r"being autosaved by another dock \(or session\) of "
                                        r"this napari: its commits go on there"):
        second.resume()
    commit_at(second, 2, 40, 40)  # its own log, in its own file
    commit_at(first, 3, 20, 20)
    assert S.read_session(S.session_file_for(image)).operations == first.log
    assert len(first.log) == 2 and len(second.log) == 1
    first.release_session_file()  # (its dock closed): offered now
    third = on_image(blob_session(tiny_sam), image)
    second.release_session_file()
    assert third.saved_session_path() == S.session_file_for(image)  # (the newest)


def test_a_file_another_process_autosaves_in_is_not_offered(tiny_sam, tmp_path):
    """The claim of another process is its lock file's ``flock``, tried without waiting."""
    from napari_sam.annotate.session_claims import claimed

    image = tmp_path / "blobs.tif"
    first = on_image(blob_session(tiny_sam), image)
    commit_at(first, 1, 20, 20)
    mine = first.autosave_path()
    first.release_session_file()
    with another_process_claims(mine) as other:
        second = on_image(blob_session(tiny_sam), image)
        assert claimed(mine) and second.saved_session_path() is None
        with pytest.raises(UserError, match=r"being autosaved by napari-sam process "
                                            f"{other.pid}"):
            second.resume()
    assert not claimed(mine) and second.saved_session_path() == mine  # its process ended


@pytest.mark.filterwarnings("ignore:Its model 'tiny'")
def test_resuming_an_alternate_goes_on_in_it(tiny_sam, tmp_path):
    """Before: the session resumed from ``.session-2`` was told that file was 'not
    resumed', and its next commit kept it aside under a dated name."""
    from napari_sam import session as S

    image = tmp_path / "blobs.tif"
    first, second = on_image(blob_session(tiny_sam), image), on_image(blob_session(tiny_sam), image)
    commit_at(first, 1, 20, 20)
    commit_at(second, 2, 40, 40)
    commit_at(second, 3, 40, 40)
    second.release_session_file()  # (its dock closed; the first lives on)
    third = on_image(blob_session(tiny_sam), image)
    infos = []
    third.notify_info = infos.append
    alternate = tmp_path / "blobs.tif.session-2.sam-session.json"
    assert third.saved_session_path() == alternate
    assert len(third.resume().operations) == 2
    commit_at(third, 4, 20, 20)
    assert "not resumed" not in third.status and "kept as" not in third.status
    assert not any("kept as" in t for t in infos)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["blobs.tif.sam-session.json",
                                                               alternate.name]
    assert S.read_session(alternate).operations == third.log and len(third.log) == 3
    commit_at(first, 5, 20, 20)  # the first goes on in its own file
    assert S.read_session(S.session_file_for(image)).operations == first.log


def test_another_channel_layers_alternate_is_not_offered(tiny_sam, tmp_path):
    """Two channel layers of one file ('blobs', 'blobs [1]'): an alternate that records the
    other layer is not this image's session (before: Resume offered it)."""
    from napari_sam.annotate.session_claims import claim_session_file

    image = tmp_path / "blobs.tif"
    primary = tmp_path / "blobs.tif.sam-session.json"
    held = claim_session_file(primary)  # (live elsewhere, nothing written yet)
    other = on_image(blob_session(tiny_sam), image)
    other.set_image(np.ascontiguousarray(blob_stack()[:, ::-1]), name="blobs [1]",
                    path=str(image))
    commit_at(other, 1, 20, 20)
    alternate = tmp_path / "blobs.tif.session-2.sam-session.json"
    assert alternate.is_file() and not primary.exists()
    held.release()
    other.release_session_file()
    mine = on_image(blob_session(tiny_sam), image)
    assert mine.saved_session_path() is None and mine.offer_resume() is None
    same = on_image(blob_session(tiny_sam), image)  # the layer whose alternate it is
    same.set_image(other.image_data, name="blobs [1]", path=str(image))
    assert same.saved_session_path() == alternate


def test_switching_image_lets_the_last_images_file_go(tiny_sam, tmp_path):
    """Before: the last image's file stayed claimed until the next autosave, so another
    window on that image autosaved in ``.session-2``."""
    from napari_sam import session as S
    from napari_sam.annotate.session_claims import claimed

    image = tmp_path / "blobs.tif"
    first = on_image(blob_session(tiny_sam), image)
    commit_at(first, 1, 20, 20)
    assert claimed(S.session_file_for(image))
    first.set_image(np.ascontiguousarray(blob_stack()[:, ::-1]), name="other",
                    path=str(tmp_path / "other.tif"))
    assert not claimed(S.session_file_for(image))
    second = on_image(blob_session(tiny_sam), image)
    assert second.resume().operations == first.log  # (offered now, and resumed)
    commit_at(second, 2, 40, 40)
    assert S.read_session(S.session_file_for(image)).operations == second.log
    assert not (tmp_path / "blobs.tif.session-2.sam-session.json").exists()


@pytest.mark.filterwarnings("ignore:Its model 'tiny'")
def test_an_alternate_resumed_stays_the_sessions_file_when_the_first_is_free(tiny_sam,
                                                                            tmp_path):
    """Both earlier sessions ended: the session resumed from ``.session-2`` (the newest)
    goes on there; the first file is neither written over nor kept aside."""
    from napari_sam import session as S

    image = tmp_path / "blobs.tif"
    first, second = on_image(blob_session(tiny_sam), image), on_image(blob_session(tiny_sam), image)
    commit_at(first, 1, 20, 20)
    commit_at(second, 2, 40, 40)
    first.release_session_file()
    second.release_session_file()
    primary = S.session_file_for(image)
    before = primary.read_bytes()
    third = on_image(blob_session(tiny_sam), image)
    third.resume()
    commit_at(third, 3, 20, 20)
    alternate = tmp_path / "blobs.tif.session-2.sam-session.json"
    assert S.read_session(alternate).operations == third.log and len(third.log) == 2
    assert primary.read_bytes() == before and len(list(tmp_path.glob("*.json"))) == 2
    assert "autosaved by" not in third.status and "kept as" not in third.status
