"""Every file name a session derives from a long image name fits a file name (255 bytes):
the alternates (``.session-2``) and kept copies (``.kept-<date>``) of a session saved under
the whole name of 191-201 bytes (before names were fitted), of a fitted name, and of an
alternate. Before: a second dock beside a resumed whole-name session, or a dock that did not
resume it, failed to autosave beside the image ("File name too long") and went on in the
cache folder, saying the image's folder was not writable."""

from __future__ import annotations

import os

import numpy as np
import pytest

from session_claim_helpers import commit_at, on_image
from stacks import blob_session

#: 191, 201 and 250 bytes: ASCII and multi-byte UTF-8 (3 bytes a character)
NAMES = ["n" * 187 + ".tif", "n" * 197 + ".tif", "n" * 246 + ".tif",
         "日" * 62 + "a.tif", "日" * 65 + "ab.tif", "日" * 82 + ".tif"]

pytestmark = pytest.mark.filterwarnings("ignore:Its model 'tiny'")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The image's folder; the cache folder (the fallback) beside it, to see it unused."""
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "images").mkdir()
    return tmp_path / "images"


def saved_before(tiny_sam, image):
    """A session of ``image`` (one commit, label 1 at (20, 20) on slice 1) saved as before
    names were fitted: under the whole name when that fitted then (191-201 bytes), else
    under the fitted one; returns its file and its labels."""
    from napari_sam import session as S

    first = on_image(blob_session(tiny_sam), image)
    commit_at(first, 1, 20, 20)
    first.release_session_file()
    fitted = S.session_file_for(image)
    if len(os.fsencode(image.name)) > 201:
        return fitted, first.labels
    saved = S.read_session(fitted)
    for p in image.parent.iterdir():
        p.unlink()
    whole = image.with_name(image.name + S.SESSION_FILE_SUFFIX)
    S.write_session(saved, whole)
    assert S.session_file_for(image) == whole
    return whole, first.labels


def assert_autosaved_beside(folder, session):
    assert session.autosave and "not writable" not in session.status, session.status
    assert not (folder.parent / "cache").exists()
    assert max(len(os.fsencode(p.name)) for p in folder.iterdir()) <= 255


@pytest.mark.parametrize("name", NAMES, ids=lambda n: f"{len(os.fsencode(n))}B")
def test_a_second_dock_beside_a_resumed_session_autosaves_in_an_alternate(tiny_sam, folder,
                                                                         name):
    from napari_sam import session as S

    image = folder / name
    before, _ = saved_before(tiny_sam, image)
    first = on_image(blob_session(tiny_sam), image)
    assert first.saved_session_path() == before
    first.resume()
    commit_at(first, 2, 40, 40)
    second = on_image(blob_session(tiny_sam), image)
    commit_at(second, 3, 20, 20)
    assert_autosaved_beside(folder, second)
    alternate = folder / (S.fit_file_name(name) + ".session-2.sam-session.json")
    assert second.autosave_path() == before and alternate.is_file()
    assert second.labels.max() == 1 and second.labels[:3].max() == 0  # label 1, slice 3
    assert np.array_equal(S.read_session(alternate).labels, second.labels)
    assert len(S.read_session(before).operations) == 2  # the first's, resumed
    first.release_session_file()
    second.release_session_file()
    third = on_image(blob_session(tiny_sam), image)  # offered both, as separate sessions
    offers = []
    third.notify_resume = lambda path, text: offers.append(text)
    third.offer_resume()
    assert offers[0].startswith("2 saved sessions for this image: ")
    assert f"{alternate.name} (1 commit, label 1" in offers[0]


@pytest.mark.parametrize("name", NAMES, ids=lambda n: f"{len(os.fsencode(n))}B")
def test_a_dock_that_does_not_resume_keeps_the_session_aside(tiny_sam, folder, name):
    from napari_sam import session as S

    image = folder / name
    before, labels = saved_before(tiny_sam, image)
    other = on_image(blob_session(tiny_sam), image)
    commit_at(other, 3, 40, 40)  # not resumed: the session there is kept aside
    assert_autosaved_beside(folder, other)
    kept = sorted(folder.glob("*.kept-*.json"))
    assert len(kept) == 1 and f"it is kept as {kept[0].name} beside it" in other.status
    assert kept[0].name.count(".sam-session.kept-") == 1
    assert np.array_equal(S.read_session(kept[0]).labels, labels)
    assert np.array_equal(S.read_session(before).labels, other.labels)


def test_an_alternate_of_a_190_byte_name_is_kept_aside(tiny_sam, folder):
    """The longest name that is not fitted: its alternate's kept copy had 262 bytes."""
    from napari_sam import session as S

    image = folder / ("n" * 186 + ".tif")
    first, second = (on_image(blob_session(tiny_sam), image) for _ in range(2))
    commit_at(first, 1, 20, 20)
    commit_at(second, 2, 40, 40)  # in .session-2
    second.release_session_file()
    third = on_image(blob_session(tiny_sam), image)
    commit_at(third, 3, 20, 20)  # not resumed: the .session-2 there is kept aside
    assert_autosaved_beside(folder, third)
    kept = sorted(folder.glob("*.kept-*.json"))
    assert len(kept) == 1 and kept[0].name.endswith(".json")
    assert np.array_equal(S.read_session(kept[0]).labels, second.labels)
    assert np.array_equal(S.read_session(folder / (image.name + ".session-2.sam-session.json"))
                          .labels, third.labels)
