"""A session replayed with a new predictor and new embeddings (as ``napari-sam segment
--prompts session.json`` does in a new process) gives exactly the labels the dock committed,
also in bfloat16, where the decoders' rounding shows in the masks (before, the first click on
an embedding ran the plain decoder and later ones the cached decoder: the random tiny model
in bfloat16 committed a pixel the replay did not). The features' own rounding (a store's
float16) is covered in tests/test_embeddings.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sam as ns
from napari_sam.annotate import AnnotationSession, ModelChoice
from napari_sam.predictor import Predictor


def live_session(model, stack, truth, z, precision):
    """The dock's steps for each object of ``truth`` on slice ``z``: a click at its centre,
    the preview, a second click near its lower edge, the preview, Shift+C."""
    s = AnnotationSession()
    s.set_image(stack, name="nuclei")
    choice = ModelChoice("model", "model")
    s.precision = precision
    s.models.put(choice, "auto", Predictor(model, device="cpu", precision=precision),
                 precision)
    s.set_model(choice)
    assert s.predictor.precision == precision
    s.go_to_slice(z)
    ids = [i for i in np.unique(truth[z]) if i and (truth[z] == i).sum() >= 40][:10]
    assert len(ids) >= 4
    for i in ids:
        inside = truth[z] == i
        r, c = ndi.center_of_mass(inside)
        s.add_point(z, r, c)
        s.update_preview()
        rows, cols = np.nonzero(inside)
        k = int(np.argmax(rows))
        s.add_point(z, rows[k] - 1, cols[k])
        s.update_preview()
        s.overwrite = True  # a random model's masks overlap
        s.commit()
    return s


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_replay_in_a_new_process_equals_what_the_dock_committed(which, precision, tiny_sam,
                                                                tmp_path):
    from napari_sam import synthetic as syn
    from napari_sam.session import read_session, replay

    model = tiny_sam if which == "tiny" else ns.load_model("demo")
    scene = syn.nuclei_3d((6, 128, 128), seed=10_002)
    s = live_session(model, scene.image, scene.labels, 3, precision)
    live = s.labels.copy()
    assert live[3].any()
    path = s.save_session(tmp_path / "nuclei")
    fresh = ns.embed(scene.image, model, device="cpu", precision=precision)  # a new process
    sess = read_session(path)
    # the demo model's masks are cut on the image's edges (its metadata's mask_boundary),
    # and the session says so: replay cuts them the same way
    assert [op.get("boundary") for op in sess.operations] == (
        [None] * len(sess.operations) if which == "tiny" else ["edge"] * len(sess.operations))
    again = replay(sess, fresh).labels
    assert np.array_equal(again, live)
    if which == "demo":  # cut at the threshold instead, the labels differ: the record matters
        for op in sess.operations:
            del op["boundary"]
        assert not np.array_equal(replay(sess, fresh).labels, live)

