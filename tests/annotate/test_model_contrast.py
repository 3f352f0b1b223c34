"""The contrast limits the model sees (annotate.model_contrast): embeddings are kept per
limits, and a zarr store written under other limits is never read as this contrast's."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate.errors import UserError


def _features(emb, z):
    return emb[z].features.detach().cpu().float().numpy()


def test_limits_reach_the_embeddings_and_switching_back_reuses_them(session):
    from napari_sam.embeddings import stack_intensity_limits

    s = session
    s.compute_embeddings([3])
    before = s.emb
    assert before.contrast_limits == pytest.approx(stack_intensity_limits(s.source.stack))
    s.set_model_contrast((0, 90))
    assert s.status.startswith("Contrast changed: slices are embedded again with the layer's "
                               "limits (0-90)."), s.status
    s.compute_embeddings([3])
    assert s.emb is not before and s.emb.contrast_limits == (0.0, 90.0)
    assert not np.allclose(_features(s.emb, 3), _features(before, 3))
    s.set_model_contrast(None)
    assert s.emb is before  # kept: no slice is embedded again
    assert "again (their embeddings were kept)" in s.status, s.status
    with pytest.raises(UserError, match="contrast_limits must be two finite numbers"):
        s.set_model_contrast((5, np.nan))


def test_a_time_series_is_told_its_frames_are_embedded_again(session):
    """'Stack axis is' t: the contrast change's line says frames (it said slices)."""
    s = session
    s.axis_kind = "t"
    s.compute_embeddings([3])
    s.set_model_contrast((0, 90))
    assert s.status.startswith("Contrast changed: frames are embedded again with the layer's "
                               "limits (0-90)."), s.status


def test_a_store_written_under_other_limits_is_not_read_back(session, tmp_path):
    from napari_sam.embeddings import StackEmbeddings

    s = session
    s.set_store(str(tmp_path / "emb.zarr"))
    s.compute_embeddings([3])  # the percentiles' embeddings: slice 3 only
    s.set_model_contrast((0, 90))
    s.compute_embeddings([3, 4])  # the store now holds slice 4 under (0, 90)
    user4 = _features(s.emb, 4)
    s.set_model_contrast(None)
    s.compute_embeddings([4])
    got = _features(s.emb, 4)
    fresh = StackEmbeddings(s.source.stack, s.predictor.model, predictor=s.predictor)
    ref = _features(fresh, 4)
    # float16 in the store: close to a fresh percentile embedding, far from the (0, 90) one
    assert np.abs(got - ref).max() < 0.05 * np.abs(user4 - ref).max()


def test_the_users_store_is_kept_and_the_limits_get_a_store_beside_it(session, tmp_path):
    """A contrast change with an Embedding store never clears the user's store: the layer's
    limits are kept in a store of their own beside it (before, the store was cleared and
    rewritten with the new limits' embeddings)."""
    import json

    import zarr

    s = session
    s.set_store(str(tmp_path / "emb.zarr"))
    s.compute_embeddings([3])  # the percentiles' embeddings, in the user's store
    key = zarr.open_group(str(tmp_path / "emb.zarr"), mode="r").attrs["key"]
    s.set_model_contrast((0, 90))
    s.compute_embeddings([3])
    assert zarr.open_group(str(tmp_path / "emb.zarr"), mode="r").attrs["key"] == key
    beside = zarr.open_group(str(tmp_path / "emb.contrast-0-90.zarr"), mode="r")
    assert json.loads(beside.attrs["key"])["contrast_limits"] == [0.0, 90.0]
    assert s.contrast_store() == str(tmp_path / "emb.contrast-0-90.zarr")


def _commit(s, z, r, c):
    s.go_to_slice(z)
    s.add_point(z, r, c)
    s.update_preview()
    s.commit()


def _contrast_session(tiny_sam, tmp_path, *limits):
    """The dock's steps on the blob stack: a commit under each of ``limits`` (None: the
    stack's percentiles), saved; returns (the session as read back, the dock's labels)."""
    from napari_sam import session as S
    from stacks import blob_session

    s = blob_session(tiny_sam)
    for z, lim in zip((3, 1, 4), limits):
        s.set_model_contrast(lim)
        _commit(s, z, 20, 20)
    live = s.labels.copy()
    path = s.save_session(tmp_path / "work")
    return S.read_session(path), live


def test_replay_embeds_with_the_contrast_each_operation_was_made_with(tiny_sam, tmp_path):
    """A session whose model saw the layer's limits replays with them, also across a change
    of the limits mid-session (before: with the percentiles, 1450 pixels differed)."""
    import napari_sam as ns
    from napari_sam import session as S
    from stacks import blob_stack

    sess, live = _contrast_session(tiny_sam, tmp_path, (0, 40), None, (0, 40))
    assert [op.get("contrast_limits") for op in sess.operations] == [[0, 40], None, [0, 40]]
    assert sess.image["model_contrast_limits"] == [0.0, 40.0]
    assert S.recorded_contrast(sess) == (0.0, 40.0)
    stack = blob_stack()

    def embed(limits):
        emb = ns.embed(stack, tiny_sam, device="cpu", contrast_limits=limits)
        emb.compute()
        return emb

    res = S.replay(sess, embed(S.recorded_contrast(sess)), embed=embed)
    assert np.array_equal(res.labels, live) and not res.notes
    # the percentiles' embeddings alone: other masks, and a note names the limits
    plain = S.replay(sess, embed(None))
    assert not np.array_equal(plain.labels, live)
    assert plain.notes[0].startswith("operation 1 was made with the model seeing contrast "
                                     "limits 0-40; these embeddings have"), plain.notes


def test_cli_replay_uses_the_recorded_contrast_and_names_a_contrast_difference(
        files, tiny_sam, tmp_path, capsys):
    """``napari-sam segment --prompts session.json`` writes the dock's labels of a session
    whose model saw the layer's limits; replayed under other limits, the line saying what the
    changes come from names the contrast (before: 'corrected by hand')."""
    import json

    import tifffile

    from napari_sam.cli import main

    sess, live = _contrast_session(tiny_sam, tmp_path, (0, 40), None, (0, 40))
    out = tmp_path / "out"
    args = ["segment", str(files["stack"]), "--prompts", str(sess.path), "--model",
            str(files["model"]), "--device", "cpu"]
    assert main([*args, "-o", str(out), "-q"]) == 0
    assert np.array_equal(tifffile.imread(out / "blobs_labels.tif"), live)
    record = json.loads(sess.path.read_text())
    for op in record["operations"]:  # as if the ops were made under the percentiles
        op.pop("contrast_limits", None)
    sess.path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "out2")]) == 0
    err = capsys.readouterr().err
    assert "the model seeing contrast limits" in err and "(the session's: 0-40)" in err, err
    assert "corrected by hand" not in err


def test_malformed_recorded_limits_are_named(tiny_sam, tmp_path):
    """A session file whose contrast limits were edited into nonsense: replay refuses it
    before any work naming the operation; Load keeps the percentiles and warns."""
    import json

    from napari_sam import session as S
    from stacks import blob_session

    sess, _ = _contrast_session(tiny_sam, tmp_path, (0, 40))
    sess.operations[0]["contrast_limits"] = [40, "x"]
    with pytest.raises(S.SessionError, match=r"operation 1's contrast_limits must be \[low, "
                                              r"high\].*got \[40, 'x'\]"):
        S.check_replayable(sess)
    record = json.loads(sess.path.read_text())
    record["image"]["model_contrast_limits"] = [40, 0]
    sess.path.write_text(json.dumps(record))
    s = blob_session(tiny_sam)
    with pytest.warns(UserWarning, match="The model sees the stack's own percentiles: the "
                                         "session's model_contrast_limits must be"):
        s.load_session(sess.path)
    assert s.model_contrast() is None
