"""The ``progress=`` argument of the long library calls, as a notebook user passes it: None or
False (silent), True (a tqdm bar), a callable ``(done, total)``; anything else is refused
before any work, naming the argument and what it accepts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stacks import blob_stack
from tiny_configs import TINY_CNN

#: segment_everything's thresholds off: the random tiny model's masks are kept, so that the
#: stack's objects are linked and propagated
KEEP_ALL = dict(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
REFUSED = r"progress must be None or False \(silent\), True \(a tqdm progress bar\) or a " \
          r"callable progress\(done, total\); got 'yes' \(str\)"


@pytest.fixture(scope="module")
def model():
    """A random tiny CNN-encoder model (128 px input, id "tiny_cnn"), in memory."""
    from napari_sam.models.build import SamConfig, build_sam

    torch.manual_seed(0)
    return build_sam(SamConfig(**TINY_CNN)).eval()


@pytest.fixture(scope="module")
def stack():
    """(7, 48, 48) float32: two bright discs on noise on every slice."""
    return blob_stack(z=7, size=48)


def test_progress_true_draws_a_tqdm_bar_and_changes_nothing(model, stack, capsys):
    import napari_sam as ns

    emb = ns.embed(stack, model, device="cpu")
    quiet = ns.segment_everything(emb, model, **KEEP_ALL)
    assert capsys.readouterr().err == ""  # silent by default
    shown = ns.segment_everything(emb, model, progress=True, **KEEP_ALL)
    err = capsys.readouterr().err
    assert "segment everything" in err and "14/14" in err  # 7 slices, then propagation
    assert np.array_equal(shown.labels, quiet.labels) and quiet.labels.max() > 0
    assert ns.segment_everything(emb, model, progress=False, **KEEP_ALL).labels.max() > 0
    assert capsys.readouterr().err == ""

    fresh = ns.embed(stack, model, device="cpu", compute=True, progress=True)
    err = capsys.readouterr().err
    assert "embed" in err and "7/7" in err and "slice" in err
    assert fresh.encoder_calls > 0


def test_progress_true_on_segment_volume_and_compute(model, stack, capsys):
    import napari_sam as ns

    emb = ns.embed(stack, model, device="cpu")
    emb.compute(progress=True)
    assert "7/7" in capsys.readouterr().err
    res = ns.segment_volume(emb, {1: [{"slice": 3, "points": [[20, 20]]}]}, progress=True)
    err = capsys.readouterr().err
    assert "segment volume" in err and "7/7" in err  # the stack's slices, not 2 Z
    assert res.labels.shape == stack.shape


@pytest.mark.parametrize("bad", ["yes", 1, 0.5])
def test_a_bad_progress_is_refused_before_any_work(model, stack, tmp_path, bad):
    import napari_sam as ns

    emb = ns.embed(stack, model, device="cpu")  # lazy: nothing encoded yet
    calls = [
        lambda: ns.segment_everything(emb, model, progress=bad, **KEEP_ALL),
        lambda: ns.segment_everything(stack, model, progress=bad, **KEEP_ALL),
        lambda: ns.segment_volume(emb, {1: [{"slice": 3, "points": [[20, 20]]}]},
                                  progress=bad),
        lambda: emb.compute(progress=bad),
        lambda: emb.compute(None, bad),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"^progress must be None or False"):
            call()
    assert emb.encoder_calls == 0
    store = tmp_path / "emb.zarr"
    with pytest.raises(TypeError, match="progress must be"):
        ns.embed(stack, model, store=store, compute=True, progress=bad)
    assert not store.exists()  # refused before the store was made


def test_the_refusal_names_the_argument_and_the_accepted_forms(model, stack):
    import napari_sam as ns

    emb = ns.embed(stack, model, device="cpu")
    with pytest.raises(TypeError, match=REFUSED):
        ns.segment_everything(emb, model, progress="yes")


def test_tiled_embeddings_take_the_same_progress_forms(model, capsys):
    import napari_sam as ns

    big = blob_stack(z=2, size=200)  # over 1.5 model inputs: tiled
    emb = ns.embed(big, model, device="cpu")
    assert emb.tiling is not None
    with pytest.raises(TypeError, match="progress must be"):
        emb.compute(progress=object())
    assert emb.encoder_calls == 0
    emb.compute(progress=True)
    n = 2 * len(emb.tiling)
    err = capsys.readouterr().err
    assert f"{n}/{n}" in err and "tile" in err
    calls = []
    ns.embed(big, model, device="cpu", compute=True,
             progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (n, n)


def test_a_stacks_progress_reports_each_step_once_up_to_the_total(model, stack):
    """Slices, then propagation (segment_volume's progress onto the Z of the second half):
    each (done, total) once, done strictly increasing, ending at (total, total)."""
    import napari_sam as ns

    emb = ns.embed(stack, model, device="cpu")
    calls = []
    res = ns.segment_everything(emb, model, progress=lambda d, t: calls.append((d, t)),
                                **KEEP_ALL)
    assert res.stats["propagation"]["seeds"] > 0  # propagated: the second half was reported
    assert calls[:7] == [(d, 14) for d in range(1, 8)]  # 7 slices, then propagation
    done = [d for d, _ in calls]  # (it moves past the slices a stopped run cannot reach)
    assert done == sorted(set(done)) and calls[-1] == (14, 14) and {t for _, t in calls} == {14}
    calls.clear()
    ns.segment_everything(emb, model, propagate=False,
                          progress=lambda d, t: calls.append((d, t)), **KEEP_ALL)
    assert calls == [(d, 7) for d in range(1, 8)]


def test_a_tiled_stacks_progress_reports_each_step_once(model):
    """Tiled slices count (slice, window) steps: the window steps and the slice's end are
    one step, not two."""
    import napari_sam as ns

    big = blob_stack(z=2, size=200)
    emb = ns.embed(big, model, device="cpu")
    calls = []
    ns.segment_everything(emb, model, progress=lambda d, t: calls.append((d, t)), **KEEP_ALL)
    total = 2 * 2 * len(emb.tiling)  # slices x windows, twice (propagation)
    done = [d for d, _ in calls]
    assert {t for _, t in calls} == {total} and calls[-1] == (total, total)
    assert done == sorted(set(done)), calls  # strictly increasing


# ---------------------------------------------- encode_tiled and segment_volume_sam2 (public)


def test_encode_tiled_takes_the_progress_forms(model, capsys):
    from napari_sam.predictor import Predictor
    from napari_sam.tiling import choose_tiling, encode_tiled

    pred = Predictor(model, device="cpu")
    image = blob_stack(z=1, size=200)[0]
    tiling = choose_tiling(image.shape, pred.img_size, True)
    n = len(tiling)
    calls = []
    real = pred.encode_rgb
    pred.encode_rgb = lambda rgbs: calls.append(len(rgbs)) or real(rgbs)
    for bad in ("yes", 1):
        with pytest.raises(TypeError, match=r"^progress must be None or False"):
            encode_tiled(pred, image, tiling, progress=bad)
    assert calls == []  # refused before any window was encoded
    shown = encode_tiled(pred, image, tiling, progress=True)
    err = capsys.readouterr().err
    assert "embed" in err and f"{n}/{n}" in err and "tile" in err
    for quiet in (False, None):
        again = encode_tiled(pred, image, tiling, progress=quiet)
        assert capsys.readouterr().err == ""
        assert torch.equal(again.embeddings[0].features, shown.embeddings[0].features)
    seen = []
    encode_tiled(pred, image, tiling, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (n, n)


def test_segment_volume_sam2_takes_the_progress_forms(capsys):
    from napari_sam.sam2_volume import segment_volume_sam2
    from test_sam2_volume import count_encoder_calls, tiny_sam2

    sam2 = tiny_sam2()
    encoded = count_encoder_calls(sam2)
    stack = np.random.default_rng(0).integers(0, 4000, size=(1, 40, 56)).astype(np.uint16)
    prompts = {1: [{"slice": 0, "points": [[20, 30]]}]}
    with pytest.raises(TypeError, match=REFUSED):
        segment_volume_sam2(stack, prompts, sam2, progress="yes")
    assert encoded == []  # refused before any slice was encoded
    shown = segment_volume_sam2(stack, prompts, sam2, progress=True)
    err = capsys.readouterr().err
    assert "segment volume" in err and "1/1" in err
    quiet = segment_volume_sam2(stack, prompts, sam2, progress=False)
    assert capsys.readouterr().err == ""
    assert np.array_equal(quiet.labels, shown.labels)
