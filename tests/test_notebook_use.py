"""What a notebook user meets as the last expression of a cell or in an error: the model
mismatch of segment_everything names both models and the fix."""

from __future__ import annotations

import pytest
import torch

from stacks import blob_stack
from tiny_configs import TINY_CNN


def _tiny(seed: int, model_id: str):
    """A random tiny CNN-encoder model (128 px input) with the id a loader would give it."""
    from napari_sam.models.build import SamConfig, build_sam

    torch.manual_seed(seed)
    model = build_sam(SamConfig(**TINY_CNN)).eval()
    model.model_id = model_id
    return model


@pytest.fixture(scope="module")
def models():
    return _tiny(0, "demo:abc123"), _tiny(1, "file:def456")


def test_segment_everything_with_another_model_names_both_and_the_fix(models):
    """As segment_volume (Predictor.check_embedding) words it, before any work."""
    import napari_sam as ns

    demo, other = models
    emb = ns.embed(blob_stack(z=3, size=48), demo, device="cpu")
    with pytest.raises(ValueError, match=r"^the stack embeddings were made by model "
                       r"'demo:abc123' but the model given is 'file:def456'; recompute them "
                       r"with this model \(napari_sam.embed\(stack, model\)\)"):
        ns.segment_everything(emb, other, points_per_side=4)
    assert emb.encoder_calls == 0
    with pytest.raises(ValueError, match=r"^the embedding was made by model 'demo:abc123' but "
                       r"this predictor uses 'file:def456'; recompute it with this model$"):
        ns.Predictor(other, device="cpu").check_embedding(emb[0])


def _one_line(obj, *facts) -> str:
    text = repr(obj)
    assert "\n" not in text and len(text) < 300, text
    for fact in facts:
        assert fact in text, (fact, text)
    return text


def test_results_show_a_one_line_summary_not_their_arrays(models, tmp_path):
    """The last expression of a notebook cell: the results of segment_everything,
    segment_volume and replay, a file read with napari_sam.io, a slice prompt with a mask
    and a predictor say what they hold in a line (they printed thousands of characters of
    arrays, or <Predictor at 0x...>)."""
    import numpy as np
    import tifffile

    import napari_sam as ns
    from napari_sam import io
    from napari_sam.session import ReplayResult
    from napari_sam.volume import SlicePrompt

    model = models[0]
    stack = blob_stack(z=7, size=48)
    emb = ns.embed(stack, model, device="cpu")
    everything = ns.segment_everything(emb, model, points_per_side=4, pred_iou_thresh=0,
                                       stability_score_thresh=0)
    n = len(everything.records)
    assert n > 0
    _one_line(everything, f"AutomaticResult({n} object", "labels (7, 48, 48) int32")
    flat = ns.segment_everything(stack[3], model, points_per_side=8, pred_iou_thresh=0,
                                 stability_score_thresh=0)
    _one_line(flat, f"AutomaticResult({len(flat.records)} object", "labels (48, 48) int32")

    mask = np.zeros((48, 48), bool)
    mask[12:29, 12:29] = True
    prompt = SlicePrompt(3, mask=mask)
    _one_line(prompt, "SlicePrompt(slice=3", "mask=<(48, 48) bool array, 289 px>")
    _one_line(SlicePrompt(2, points=[[20, 20]], labels=[1]), "points=[[20, 20]]", "labels=[1]")
    res = ns.segment_volume(emb, {1: [prompt], 2: [{"slice": 3, "points": [[44, 44]]}]})
    _one_line(res, f"VolumeResult({len(res.stop_reasons)} object", "labels (7, 48, 48) uint8",
              f"{res.decoder_calls} decoder calls")

    replayed = ReplayResult(res.labels, [[1, 2]], [], {"format": 1, "n_slices": 7,
                                                       "objects": [{"id": 1}] * 50})
    _one_line(replayed, "ReplayResult(1 operation, 2 labels written, labels (7, 48, 48) uint8; "
              "every id as recorded)")

    tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True,
                     metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"})
    img = io.read_image(tmp_path / "s.tif", lazy=True)
    _one_line(img, "ImageData(ZYX (7, 48, 48) float32", "pixel_size=(2.0, 1.0, 1.0) um",
              "s.tif", "lazy")

    pred = ns.Predictor(model, device="cpu", precision="fp32")
    _one_line(pred, "Predictor(model='demo:abc123', device=cpu, precision=fp32, no image set)")
    pred.set_image(stack[3])
    _one_line(pred, "precision=fp32, image 48 x 48)")
    pred.set_image(blob_stack(z=1, size=200)[0])  # over 1.5 model inputs: tiled
    _one_line(pred, "image 200 x 200 in ", " windows)")


def test_the_docs_dock_example_opens_the_file_so_its_session_records_the_path():
    """docs/scripting.md's "Drive the dock" added ``tifffile.imread("nuclei.tif")`` as an
    array: a session saved from it had no image path, and docs/sessions.md's replay that
    follows failed inside tifffile. It opens the file now (tests/test_scripting.py runs it)."""
    from test_scripting import code_blocks

    (block,) = code_blocks("Drive the dock from a script")
    assert 'viewer.open("nuclei.tif", plugin="napari")' in block
    assert "add_image" not in block


def test_the_docs_replay_recipe_takes_the_array_of_a_session_without_a_file(
        files, tiny_sam, tmp_path, monkeypatch):
    """docs/sessions.md's Python replay, run as written on a session whose image came from an
    array (``image["path"]`` None): it uses the array (``my_stack``) instead of failing in
    ``tifffile.imread(None)``."""
    import re
    from pathlib import Path

    import numpy as np

    import napari_sam as ns
    from napari_sam import session as S
    from test_session import make_session

    text = (Path(__file__).resolve().parents[1] / "docs" / "sessions.md").read_text("utf-8")
    snippet = re.search(r"From Python.*?```python\n(.*?)```", text, re.S).group(1)
    sess = make_session(files, tiny_sam)
    sess.image["path"] = None  # as the dock saves an image napari got from an array
    S.write_session(sess, tmp_path / "work.json")
    real_embed = ns.embed
    monkeypatch.setattr(ns, "embed", lambda *a, **k: real_embed(*a, **{"device": "cpu", **k}))
    monkeypatch.chdir(tmp_path)
    scope = {"my_stack": blob_stack()}  # the array the session was made on
    exec(snippet, scope)  # noqa: S102 - the documented code, as a user runs it
    assert scope["stack"] is scope["my_stack"]
    assert {c["status"] for c in scope["changes"]} == {"same"}
    assert np.array_equal(scope["result"].labels, sess.labels)
