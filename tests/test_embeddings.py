import numpy as np
import pytest
import torch

from napari_sam.embeddings import embed
from napari_sam.predictor import Predictor


def make_stack(z=6, shape=(40, 50), seed=0):
    rng = np.random.default_rng(seed)
    stack = rng.normal(200, 10, (z, *shape))
    for i in range(z):
        stack[i, 10 + i : 25 + i, 15:30] += 800
    return stack.astype(np.uint16)


def test_slices_match_predictor_with_volume_limits(tiny_sam):
    stack = make_stack()
    emb = embed(stack, tiny_sam, device="cpu", batch_size=4)
    assert emb.shape == (6, 40, 50) and len(emb) == 6
    pred = Predictor(tiny_sam, device="cpu")
    for z in (0, 3, 5):
        ref = pred.set_image(stack[z], contrast_limits=emb.contrast_limits).features
        # the stack's embeddings are float16-rounded (as the store keeps them)
        torch.testing.assert_close(emb[z].features, ref.half().float(), atol=1e-4, rtol=1e-3)
        assert torch.equal(emb[z].features, emb[z].features.half().float())


def test_batches_and_lookahead(tiny_sam):
    emb = embed(make_stack(z=7), tiny_sam, device="cpu", batch_size=3)
    emb[0]  # computes 0, 1, 2 in one call
    assert emb.encoder_calls == 1
    emb[1], emb[2]
    assert emb.encoder_calls == 1
    emb.compute()  # 3..5 and 6
    assert emb.encoder_calls == 3


def test_memory_lru(tiny_sam):
    emb = embed(make_stack(z=5), tiny_sam, device="cpu", batch_size=1, cache_size=2)
    emb[0], emb[1], emb[2]
    assert emb.encoder_calls == 3
    emb[2]
    assert emb.encoder_calls == 3
    emb[0]  # evicted
    assert emb.encoder_calls == 4


def test_store_hit_after_reopen(tiny_sam, tmp_path):
    stack = make_stack()
    store = tmp_path / "emb.zarr"
    first = embed(stack, tiny_sam, store=store, device="cpu", compute=True)
    assert first.stored().all()
    again = embed(stack, tiny_sam, store=store, device="cpu", compute=True)
    assert again.encoder_calls == 0
    # float16 storage, and the features first computed were rounded the same way
    for z in range(len(stack)):
        assert torch.equal(again[z].features, first[z].features)


def test_a_slice_decodes_the_same_computed_stored_or_read_back(tiny_sam, tmp_path):
    """The features of a slice are identical whether just computed (with or without a
    store) or read back from the store, so its masks are too (a rerun, a replayed
    session)."""
    stack = make_stack()
    store = tmp_path / "emb.zarr"
    plain = embed(stack, tiny_sam, device="cpu", compute=True)
    first = embed(stack, tiny_sam, store=store, device="cpu", compute=True)
    again = embed(stack, tiny_sam, store=store, device="cpu", compute=True)
    assert again.encoder_calls == 0
    pred = Predictor(tiny_sam, device="cpu")
    masks = []
    for emb in (plain, first, again):
        assert torch.equal(emb[3].features, plain[3].features)
        out = pred.predict_batch(emb[3], points=[[[17.0, 22.0]]], labels=[[1]])
        masks.append(out.logits)
    assert torch.equal(masks[0], masks[1]) and torch.equal(masks[0], masks[2])


def test_store_miss_on_other_precision(tiny_sam, tmp_path):
    """Features made at another precision (bf16 against fp32) are recomputed, not reused."""
    stack = make_stack()
    store = tmp_path / "emb.zarr"
    embed(stack, tiny_sam, store=store, device="cpu", compute=True, precision="fp32")
    emb = embed(stack, tiny_sam, store=store, device="cpu", compute=True, precision="bf16",
                batch_size=6)
    assert emb.encoder_calls == 1
    emb = embed(stack, tiny_sam, store=store, device="cpu", compute=True, precision="bf16",
                batch_size=6)
    assert emb.encoder_calls == 0  # the same precision again: reused


def test_store_miss_on_changed_slice(tiny_sam, tmp_path):
    stack = make_stack()
    store = tmp_path / "emb.zarr"
    embed(stack, tiny_sam, store=store, device="cpu", compute=True, contrast_limits=(0, 2000))
    changed = stack.copy()
    changed[4, 0, 0] += 1  # one pixel of one slice
    emb = embed(changed, tiny_sam, store=store, device="cpu", contrast_limits=(0, 2000), batch_size=1)
    emb.compute()
    assert emb.encoder_calls == 1  # only slice 4 recomputed


def test_store_miss_on_other_model_or_preprocessing(tiny_sam, tiny_config, tmp_path):
    from napari_sam.models import build_sam

    stack = make_stack()
    store = tmp_path / "emb.zarr"
    embed(stack, tiny_sam, store=store, device="cpu", compute=True)
    other = build_sam(tiny_config)
    other.model_id = "other:1"
    emb = embed(stack, other, store=store, device="cpu", compute=True, batch_size=6)
    assert emb.encoder_calls == 1
    emb = embed(stack, other, store=store, device="cpu", compute=True, batch_size=6,
                contrast_limits=(0, 100))
    assert emb.encoder_calls == 1  # other contrast limits -> recomputed


def test_interrupted_run_resumes(tiny_sam, tmp_path):
    stack = make_stack(z=6)
    store = tmp_path / "emb.zarr"
    emb = embed(stack, tiny_sam, store=store, device="cpu", batch_size=2)

    class Stop(Exception):
        pass

    def progress(done, total):
        if done >= 4:
            raise Stop

    with pytest.raises(Stop):
        emb.compute(progress=progress)
    assert emb.stored().sum() == 4
    resumed = embed(stack, tiny_sam, store=store, device="cpu", batch_size=2, compute=True)
    assert resumed.encoder_calls == 1  # the last two slices only
    assert resumed.stored().all()


def test_rgb_stack_and_bad_input(tiny_sam):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (2, 30, 30, 3), dtype=np.uint8)
    assert embed(rgb, tiny_sam, device="cpu")[1].features.shape[0] == 256
    with pytest.raises(ValueError, match="stack of shape"):
        embed(np.zeros((30, 30)), tiny_sam)
    with pytest.raises(ValueError, match="empty"):
        embed(np.zeros((0, 30, 30)), tiny_sam)
    emb = embed(rgb, tiny_sam, device="cpu")
    with pytest.raises(IndexError, match="out of range"):
        emb[5]


def test_store_miss_on_a_thin_strip_embedded_with_the_old_padding(tiny_sam, tmp_path,
                                                                  monkeypatch):
    """Thin strips are padded with their mirror image (session 38): a store written with the
    pixel-mean padding before is recomputed, not read back; an ordinary stack's key is as
    before (its stores stay valid)."""
    from napari_sam import preprocess

    strip = make_stack(z=2, shape=(6, 60))  # resized short side far under a quarter
    store = tmp_path / "strip.zarr"
    with monkeypatch.context() as m:
        m.setattr(preprocess, "THIN_FRACTION", 0.0)  # the padding before the change
        old = embed(strip, tiny_sam, store=store, device="cpu", compute=True)
        ordinary_before = embed(make_stack(), tiny_sam, device="cpu").key
    assert old.encoder_calls >= 1
    now = embed(strip, tiny_sam, store=store, device="cpu", compute=True)
    assert now.encoder_calls >= 1  # recomputed
    assert not torch.equal(now[0].features, old[0].features)
    again = embed(strip, tiny_sam, store=store, device="cpu", compute=True)
    assert again.encoder_calls == 0
    assert embed(make_stack(), tiny_sam, device="cpu").key == ordinary_before
