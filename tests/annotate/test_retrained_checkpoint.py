"""A checkpoint retrained into the same path while the dock is open (the data engine's loop:
annotate, `napari-sam train ... -o my_model.pt --overwrite`, pick my_model.pt again): the
session kept the weights (and embeddings) it had loaded from the old file, keyed by the path
(helper walk-through, session 27: the same preview, and the saved session recorded the old
model's id). Now a file written again is loaded again and the user is told."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch

from napari_sam.annotate import AnnotationSession
from napari_sam.annotate.model_choice import file_choice
from napari_sam.models.registry import DEMO_NAME, where

pytestmark = pytest.mark.slow


def _write(path, scale: float, stamp: int) -> None:
    sd = torch.load(where(DEMO_NAME), map_location="cpu", weights_only=True)
    sd = {k: v * scale if k.startswith("mask_decoder.output_hypernetworks") else v
          for k, v in sd.items()}
    torch.save(sd, path)
    meta = json.loads(where(DEMO_NAME).with_suffix(".json").read_text())  # of this file:
    meta.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(),  # as training writes
                size=path.stat().st_size)
    path.with_suffix(".json").write_text(json.dumps(meta))
    os.utime(path, ns=(stamp, stamp))  # a later write, as training writes it


def _clicked(ckpt):
    """A session on a small nuclei image with the checkpoint ``ckpt``, one click previewed:
    (session, image, the preview)."""
    from napari_sam import synthetic

    image = synthetic.nuclei_2d((128, 128), seed=5, radius=(6, 10), n_objects=12).image
    s = AnnotationSession()
    s.set_image(image, name="nuclei")
    s.set_model(file_choice(ckpt))
    s.compute_embeddings()
    s.add_point(0, 64, 64)
    (shown,) = s.update_preview()
    return s, image, shown


def test_picking_a_checkpoint_written_again_loads_the_new_weights(tmp_path):
    ckpt = tmp_path / "my_model.pt"
    _write(ckpt, 1.0, 1_000_000_000_000_000_000)
    s, _, first = _clicked(ckpt)
    first_id = s.predictor.model.model_id
    # retrained into the same path
    _write(ckpt, -1.0, 2_000_000_000_000_000_000)
    s.set_model(file_choice(ckpt))
    assert "changed on disk since it was loaded" in s.status
    s.compute_embeddings()
    (second,) = s.update_preview()
    assert s.predictor.model.model_id != first_id
    assert not np.array_equal(first.masks, second.masks)  # the negated mask head
    assert s.session_state().model["id"] == s.predictor.model.model_id


def test_a_session_whose_checkpoint_moved_loads_with_the_model_picked_now(tmp_path):
    """It was refused ("unknown model ... pick a model and load the session again"), also
    after picking a model, so the advice did not work (helper walk-through, session 27)."""
    from napari_sam.annotate.errors import UserError

    ckpt = tmp_path / "m1.pt"
    _write(ckpt, 1.0, 1_000_000_000_000_000_000)
    s, image, _ = _clicked(ckpt)
    assert s.commit().ids == [1]
    saved = s.save_session(tmp_path / "work")
    labels = s.labels.copy()
    moved = tmp_path / "m1_moved.pt"
    ckpt.rename(moved)
    ckpt.with_suffix(".json").rename(moved.with_suffix(".json"))

    again = AnnotationSession()
    again.set_image(image, name="nuclei")
    with pytest.raises(UserError, match="unknown model"):  # no model picked: nothing to use
        again.load_session(saved)
    again.set_model(file_choice(moved))
    again.load_session(saved)
    assert f"Its model {str(ckpt)!r} is not there any more" in again.status
    assert "put it back at that path to use it" in again.status
    assert "decoded with the model picked" in again.status
    assert again.model_choice.key == str(moved)
    assert np.array_equal(again.labels, labels)
    again.add_point(0, 30, 30)
    assert again.update_preview()  # the picked model decodes


def test_a_tiff_picked_as_a_checkpoint_is_refused_when_picked(tmp_path):
    """It was taken for a checkpoint with Python objects ("weights only" is in torch's
    message for any file of another format) and failed only at the first click."""
    import tifffile

    from napari_sam.annotate.errors import UserError

    tif = tmp_path / "slice20.tif"
    tifffile.imwrite(tif, np.zeros((20, 20), np.uint8))
    with pytest.raises(UserError, match="slice20.tif cannot be read as a PyTorch checkpoint"):
        file_choice(tif)


def test_a_file_rewritten_while_it_loads_is_not_served_as_the_new_one(tmp_path):
    """The model cache keyed a loaded predictor by the file as it was when the load ended:
    a training epoch written meanwhile got the old weights filed under its own identity; and
    every version of a file retrained in place stayed in memory (a reviewer, session 27)."""
    from napari_sam.annotate.model_choice import ModelCache

    ckpt = tmp_path / "m.pt"
    _write(ckpt, 1.0, 1_000_000_000_000_000_000)
    cache, choice = ModelCache(), file_choice(ckpt)
    first = cache.load(choice, "cpu")
    _write(ckpt, -1.0, 2_000_000_000_000_000_000)  # the next epoch, written during the load
    cache.put(choice, "cpu", first)
    assert cache.get(choice, "cpu") is None  # the file now on disk is not what was loaded
    second = cache.load(choice, "cpu")
    cache.put(choice, "cpu", second)
    assert cache.get(choice, "cpu") is second
    assert len(cache._predictors) == len(cache._models) == 1  # the old version dropped


def test_a_session_of_a_model_name_this_version_does_not_know_says_so(tmp_path):
    """A registry name from a newer version was said to be a checkpoint "moved, renamed or
    deleted", with the advice to put it back at its path (there is no path)."""
    import json

    s, image, demo = _clicked_demo()
    assert s.commit().ids == [1]
    saved = s.save_session(tmp_path / "work")
    data = json.loads(saved.read_text())
    data["model"]["name"] = "vit_b_future"
    saved.write_text(json.dumps(data))

    again = AnnotationSession()
    again.set_image(image, name="nuclei")
    again.set_model(demo)
    again.load_session(saved)
    assert ("Its model 'vit_b_future' is no model name this version of napari-sam-stacks "
            "knows (it knows ") in again.status
    assert "was the session made with a newer version?" in again.status
    assert "moved" not in again.status and "put the checkpoint back" not in again.status
    assert np.array_equal(again.labels, s.labels)


def _clicked_demo():
    """(session with one click previewed on a nuclei image, the image, the demo's choice)."""
    from napari_sam import synthetic
    from napari_sam.annotate.model_choice import model_choices

    image = synthetic.nuclei_2d((128, 128), seed=5, radius=(6, 10), n_objects=12).image
    (demo,) = [c for c in model_choices() if c.is_demo]
    s = AnnotationSession()
    s.set_image(image, name="nuclei")
    s.set_model(demo)
    s.compute_embeddings()
    s.add_point(0, 64, 64)
    s.update_preview()
    return s, image, demo


def test_the_ready_line_names_the_checkpoint_and_keeps_its_changed_on_disk_notice(tmp_path):
    """After picking a checkpoint file the preload's lines ("Computing SAM embeddings ...",
    "Embeddings ready", "Click on an object ...") replaced "Model /path/my_model.pt" and the
    notice that the file changed on disk (helper walk-through of the data engine): nothing
    named the model in use, and the promised notice was gone. Now the ready line says both,
    as the demo model's says "[demo model]"."""
    from napari_sam import synthetic

    ckpt = tmp_path / "my_model.pt"
    _write(ckpt, 1.0, 1_000_000_000_000_000_000)
    image = synthetic.nuclei_2d((128, 128), seed=5, radius=(6, 10), n_objects=12).image
    s = AnnotationSession()
    s.set_image(image, name="nuclei")
    s.set_model(file_choice(ckpt))
    s.preload()  # what the dock runs after a pick
    assert s.status.startswith("Click on an object in 'nuclei'"), s.status
    assert s.status.endswith("[model my_model.pt]"), s.status
    assert "changed on disk" not in s.status
    _write(ckpt, -1.0, 2_000_000_000_000_000_000)  # retrained into the same path
    s.set_model(file_choice(ckpt))
    s.preload()
    assert s.status.startswith(f"The checkpoint {ckpt} changed on disk since it was loaded "
                               "(written again?): its new weights are used, and the image is "
                               "embedded again. Click on an object in 'nuclei'"), s.status
    assert s.status.endswith("[model my_model.pt]"), s.status
