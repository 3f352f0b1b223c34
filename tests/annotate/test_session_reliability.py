"""The annotation session without napari: prompts belong to their image, negative points
alone refine a selected label (and replay), a refine's status counts true pixels, a job's
progress never runs backwards within a phase, autosave falls back to the cache folder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_sam.annotate import UserError
from napari_sam.annotate.jobs import Phase, ProgressTracker


def _with_label(s, label: int = 5) -> np.ndarray:
    s.labels = np.zeros((6, 64, 64), np.uint32)
    s.labels[2:4, 12:28, 12:28] = label
    s.refine, s.refine_label = True, label
    return s.labels.copy()


def test_prompts_stay_with_their_image(session):
    s = session
    blobs = s.image_data
    s.add_point(3, 20, 20)
    s.add_point(3, 30, 30, positive=False)
    other = np.zeros((4, 32, 32), np.float32)
    s.set_image(other, name="other")
    assert len(s.prompt_arrays()[0]) == 0  # blobs' prompts are not other's
    assert s.status.startswith("Set aside 2 uncommitted prompts of 'blobs' (2 points)")
    s.add_point(3, 5, 5)  # (slice 3 stays shown: the restored prompts are previewed)
    s.set_image(blobs, name="blobs")
    points, labels, _ = s.prompt_arrays()
    assert points.tolist() == [[3, 20, 20], [3, 30, 30]] and labels.tolist() == [1, 0]
    assert "Set aside 1 uncommitted prompt of 'other' (1 point)" in s.status
    assert "Restored 2 uncommitted prompts of 'blobs' (2 points) on slice 3" in s.status
    assert [p.key for p in s.previews] == ["points"]  # previewed again
    assert "Set aside: 1 uncommitted prompt of 'other'" in s.next_step()


def test_negative_points_alone_refine_a_label_and_replay(session, tmp_path):
    from napari_sam.session import read_session, replay

    s = session
    before = _with_label(s)
    s.add_point(3, 20, 20, positive=False)
    (preview,) = s.update_preview()
    assert preview.mask_prompt and preview.key == "points"
    s.commit()
    after = s.labels[3]
    added = int(((after == 5) & (before[3] != 5)).sum())
    removed = int(((after != 5) & (before[3] == 5)).sum())
    assert s.status.startswith(f"Refined label 5: {int((after == 5).sum())} pixels on slice 3 "
                               f"now ({added} added, {removed} removed).")
    sess = read_session(s.save_session(tmp_path / "refined"))
    # the negative point and the positive point placed on the part kept (the anchor)
    recorded = sess.operations[-1]["objects"][0]
    assert recorded["labels"] == [0, 1]
    assert recorded["points"][-1] == list(preview.prompt.anchor)
    assert np.array_equal(replay(sess, s.emb).labels, s.labels)


def test_negative_points_alone_refine_on_their_slice_only(session):
    """Propagation has no mask prompt of the refined label: negatives alone are not an
    object to carry through the stack (as without refining)."""
    s = session
    _with_label(s)
    s.add_point(3, 20, 20, positive=False)
    with pytest.raises(UserError, match="No prompts to propagate"):
        s.propagate()


def test_progress_tracker_never_goes_backwards_within_a_phase():
    t = ProgressTracker()
    shown = [t.update(*r) for r in [(0, 0), (0, 6), (4, 6), (2, 6)]]
    assert shown == [(0, 0), (0, 6), (4, 6), (4, 6)]
    assert t.update(3, 12) == (8, 12)  # a new total without a new phase: held at 2/3
    assert t.update(12, 12) == (12, 12)
    assert t.start(Phase("propagating")) == "propagating" == t.phase
    assert t.update(0, 12) == (0, 12)  # a named phase starts from 0


def test_embedding_is_a_named_phase():
    from napari_sam.annotate.jobs import embed_job

    class Stack:  # four slices embedded two at a time
        batch_size = 2
        done: list = []

        def __len__(self):
            return 4

        def compute(self, indices):
            self.done.extend(indices)

        def missing(self, indices):  # (none embedded yet; no model: no memory check)
            return list(indices)

    seen = [v.name if isinstance(v, Phase) else v for v in embed_job(Stack())]
    assert seen == ["embedding", (0, 4), (2, 4), (4, 4)]
    assert list(embed_job(Stack(), [])) == [(0, 0)]  # nothing to embed: no phase


def test_autosave_falls_back_to_the_cache_folder(session, tmp_path, monkeypatch):
    from napari_sam.annotate import session_places

    s = session
    image = tmp_path / "ro" / "blobs.tif"
    image.parent.mkdir()
    s.path = str(image)
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(session_places, "folder_writable", lambda folder: False)
    s.add_point(3, 20, 20)
    s.update_preview()
    s.commit()
    fallback = session_places.fallback_session_file(image)
    assert fallback.is_file() and not list(image.parent.iterdir())
    assert s.status.endswith(f"is not writable: the session is autosaved in {fallback}.")
    assert s.saved_session_path() == fallback


def test_autosave_falls_back_when_writing_beside_the_image_fails(session, tmp_path,
                                                                 monkeypatch):
    """The folder looks writable but the write fails (a read-only mount, a full disk):
    the session goes to the cache folder all the same, and autosave stays on."""
    from napari_sam import session as S
    from napari_sam.annotate import session_places

    s = session
    image = tmp_path / "share" / "blobs.tif"
    image.parent.mkdir()
    s.path = str(image)
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    write = S.write_session

    def refuse_beside(sess, path, **kwargs):
        if path.parent == image.parent:
            raise PermissionError(13, "Permission denied")
        return write(sess, path, **kwargs)

    monkeypatch.setattr(S, "write_session", refuse_beside)
    s.add_point(3, 20, 20)
    s.update_preview()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "autosave failed" warning
        s.commit()
    fallback = session_places.fallback_session_file(image)
    assert fallback.is_file() and s.autosave
    assert f"the session is autosaved in {fallback}." in s.status


def test_prompts_beside_the_image_are_ignored_said_and_never_saved(session, tmp_path):
    """napari's points layer takes a click beside the image, and a box can be drawn off it:
    they segment nothing, the status says so, and the saved session (pending prompts) leaves
    them out, so it loads again (a prompt outside the image makes a session file refused)."""
    from napari_sam.session import read_session

    s = session
    s.add_point(3, 50, 50)
    s.add_point(3, 50, 80)  # beside the 64 x 64 image
    s.add_box(3, 70, 70, 90, 90)  # all of it beside the image
    s.add_box(3, -8, -8, 30, 30)  # partly on it: a prompt (clipped when decoded)
    previews = s.update_preview()
    assert len(previews) == 2  # the point object and the box on the image
    assert np.asarray(previews[0].prompt.points).tolist() == [[50.0, 50.0]]
    assert "2 prompts lie beside the image and are ignored" in s.status
    path = s.save_session(tmp_path / "blobs")
    back = read_session(path)
    assert back.pending["points"] == [[3.0, 50.0, 50.0]]
    assert back.pending["boxes"] == [[3.0, -8.0, -8.0, 30.0, 30.0]]


def test_a_session_of_an_array_replays_as_docs_sessions_md_says(session, tmp_path):
    """A script's image has no file: its session records ``path`` null, and
    docs/sessions.md's replay (``tifffile.imread(s.image["path"])``) failed on it. The docs
    now say to pass the same array, and how to check that it is the one; this does that."""
    from pathlib import Path

    import numpy as np

    from napari_sam import session as S

    text = (Path(__file__).resolve().parents[2] / "docs" / "sessions.md").read_text("utf-8")
    assert "`s.image[\"path\"]` is `null`" in text
    assert "session.image_differences(s, content_hash=session.image_hash(stack), name=None)" \
        in text
    session.add_point(3, 20, 20)
    session.update_preview()
    session.commit()
    s = S.read_session(session.save_session(tmp_path / "work"))
    assert s.image["path"] is None
    stack = session.source.stack  # the same array
    S.check_image(s, stack.shape)
    assert S.image_differences(s, content_hash=S.image_hash(stack), name=None) == []
    other = np.asarray(stack) + 1
    assert S.image_differences(s, content_hash=S.image_hash(other), name=None)
    emb = session.emb
    emb.compute()
    result = S.replay(s, emb)
    assert np.array_equal(result.labels, session.target_labels())


def test_the_base_labels_are_hashed_once_for_all_autosaves(session, tmp_path, monkeypatch):
    """Commits into labels that held labels before (the session's base): every autosave and
    save writes the base's TIFF under the same content hash, computed once (it took about
    2 s per GB on each autosave); the files read back with their base checked."""
    from napari_sam import session as S

    s = session
    s.path = str(tmp_path / "blobs.tif")
    base = _with_label(s)
    s.refine = False
    hashed, labels_hash = [], S.labels_hash

    def spy(a):
        hashed.append(np.array_equal(a, base))
        return labels_hash(a)

    monkeypatch.setattr(S, "labels_hash", spy)
    for z, (row, col) in ((1, (44, 44)), (4, (46, 20))):
        s.add_point(z, row, col)
        s.update_preview()
        s.commit()
    saved = s.save_session(tmp_path / "copy.json")
    assert hashed.count(True) == 1 and len(hashed) >= 4  # the base once; labels each time
    for path in (S.session_file_for(s.path), saved):
        back = S.read_session(path)  # (checks the base TIFF against its recorded hash)
        assert len(back.operations) == 2 and np.array_equal(back.base, base)
    with pytest.raises(ValueError):
        s._log_base[0, 0, 0] = 9  # the base cannot change under its hash


def test_a_loaded_sessions_base_stays_the_callers_to_change(session, tmp_path):
    """The log keeps its base read-only (its hash is kept), but ``load_session`` made the
    base of the Session it hands back read-only too: a script that changed ``sess.base``
    got "assignment destination is read-only". The log keeps a read-only copy instead."""

    s = session
    s.path = str(tmp_path / "blobs.tif")
    _with_label(s)
    s.refine = False
    s.add_point(1, 44, 44)
    s.update_preview()
    s.commit()
    saved = s.save_session(tmp_path / "copy.json")
    sess = s.load_session(saved)
    assert sess.base is not None and sess.base.flags.writeable
    before = s._log_base.copy()
    sess.base[0, 0, 0] = 9  # the caller's array, not the log's base
    assert np.array_equal(s._log_base, before)
    with pytest.raises(ValueError):
        s._log_base[0, 0, 1] = 9  # the log's base cannot change under its hash


def test_an_autosave_failing_before_the_writer_has_it_leaves_the_one_waiting(
        session, tmp_path, monkeypatch):
    """Three commits while the first autosave is written (a slow disk): the second waits,
    the third fails while it is prepared (a cache folder setting naming an unknown user's
    home): the second is still written (it was dropped when the third's labels were copied
    into its buffer)."""
    import threading

    from napari_sam import session as S
    from napari_sam.annotate import autosave_writer

    s = session
    s.path = str(tmp_path / "blobs.tif")
    monkeypatch.setattr(autosave_writer, "BACKGROUND_BYTES", 0)  # every autosave threaded
    s.autosave_writer.post = lambda fn: fn()
    gate, write = threading.Event(), S.write_session

    def slow(sess, path, **kwargs):
        gate.wait(60)
        return write(sess, path, **kwargs)

    monkeypatch.setattr(S, "write_session", slow)
    for z, (row, col) in ((1, (44, 44)), (4, (46, 20))):
        s.add_point(z, row, col)
        s.update_preview()
        s.commit()
    assert not s.autosave_writer.idle
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", "~no-such-user-napari-sam/cache")
    s.add_point(2, 20, 20)
    s.update_preview()
    with pytest.raises(RuntimeError):
        s.commit()
    gate.set()
    assert s.wait_autosave(60)
    saved = S.read_session(S.session_file_for(s.path))
    assert len(saved.operations) == 2  # the second commit's autosave, not the first's


def test_autosave_failing_everywhere_warns_and_says_it_retries(
        session, tmp_path, monkeypatch):
    """The write fails beside the image and under the cache folder (a full disk): the warning
    and the commit's status line say so, and that autosave tries again (it stays on)."""
    import errno

    from napari_sam import session as S

    s = session
    s.path = str(tmp_path / "blobs.tif")
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))

    def full(sess, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(S, "write_session", full)
    s.add_point(3, 20, 20)
    s.update_preview()
    with pytest.warns(UserWarning, match="it tries again"):
        s.commit()
    assert s.autosave and s.autosave_failing == "No space left on device"
    assert s.status.startswith("Committed") and (
        "failed (No space left on device); it tries again at the next commit and in 15 s"
        in s.status)


def test_layer_names_of_one_slug_get_session_files_of_their_own(session, tmp_path):
    """Two channel layers of one file each autosave to ``<file>.<layer name>.sam-session
    .json`` when the file's own session is another layer's; 'two [1]' and 'two (1)' made the
    same file name ('two_1'), so those two kept each other's session aside at every commit.
    A name whose file holds another layer's session adds the name's hash."""
    import json

    from napari_sam import session as S

    s = session
    image = tmp_path / "two.tif"
    s.path = str(image)
    beside = S.session_file_for(image)

    def record(path, name):
        path.write_text(json.dumps({"image": {"name": name, "hash": "other pixels"}}))

    record(beside, "two")
    s.name = "two [1]"
    first = s.own_session_file(beside)
    assert first.name == "two.tif.two_1.sam-session.json"
    record(first, "two [1]")
    assert s.own_session_file(beside) == first  # its own, once written
    s.name = "two (1)"
    second = s.own_session_file(beside)
    assert second != first and second.name.startswith("two.tif.two_1-")
    assert second.name.endswith(".sam-session.json")
    record(second, "two (1)")
    assert s.own_session_file(beside) == second
    s.name = "two [1]"
    assert s.own_session_file(beside) == first


def test_loading_a_session_drops_a_line_waiting_for_a_later_preview(session, tmp_path):
    """A line kept for the next preview before a session is loaded (e.g. "The propagation
    ended, but the prompts changed ..." with 'Live preview' off) stuck to the first preview
    after the load, however much later (reviewer's catch)."""
    s = session
    s.path = str(tmp_path / "blobs.tif")
    s.refine = False
    s.add_point(1, 44, 44)
    s.update_preview()
    s.commit()
    saved = s.save_session(tmp_path / "copy.json")
    s.preview_lead = "An old line."
    s.load_session(saved)
    s.add_point(4, 20, 20)
    s.update_preview()
    assert "An old line." not in s.status, s.status
