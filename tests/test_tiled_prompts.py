"""Clicks and boxes on tiled images (napari_sam.tiled_prompts, Predictor(tiling=...)).

A 1024 x 1024 synthetic image of small nuclei (8-20 px across) with the demo model (input
256 px): untiled, the image is shrunk 4x and nuclei are 2-5 px; tiled, every window sees them
at full resolution, as a crop centred on the nucleus does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam import load_model
from napari_sam.predictor import Predictor
from napari_sam.preprocess import DEFAULT_PERCENTILES, intensity_limits, to_uint8_rgb
from napari_sam.synthetic import nuclei_2d
from napari_sam.tiled_prompts import TiledPrediction, decode_tiled, shift_logits
from napari_sam.tiling import TiledEmbedding, Tiling, Window
from napari_sam.training.prompts import central_point

pytestmark = pytest.mark.timeout(900)

SIZE = 1024


@pytest.fixture(scope="module")
def scene():
    s = nuclei_2d((SIZE, SIZE), seed=3, radius=(4, 10), n_objects=400, min_size=20)
    limits = intensity_limits(s.image, DEFAULT_PERCENTILES)
    return s.image, s.labels, limits


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


@pytest.fixture(scope="module")
def tiled(demo, scene):
    image, _, limits = scene
    p = Predictor(demo, device="cpu", precision="fp32")
    emb = p.set_image(image, contrast_limits=limits)
    assert isinstance(emb, TiledEmbedding) and p.tiled is emb
    assert (emb.tiling.window, emb.tiling.halo) == (256, 32) and len(emb.tiling) == 25
    return p


def _iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _best(masks, scores):
    return masks[int(np.argmax(scores))]


def _crop_masks(model, image, limits, points, side=256):
    """One click per point in a model-input-sized crop centred on it (clipped to the image):
    the best candidate's mask pasted into the whole image's frame, one at a time."""
    pred = Predictor(model, device="cpu", precision="fp32")
    h, w = image.shape[:2]
    for pt in points:
        r0 = int(np.clip(round(pt[0]) - side // 2, 0, h - side))
        c0 = int(np.clip(round(pt[1]) - side // 2, 0, w - side))
        emb = pred.encode_rgb([to_uint8_rgb(image[r0:r0 + side, c0:c0 + side], limits)])[0]
        out = pred.predict_batch(emb, points=[[np.asarray(pt, float) - [r0, c0]]], labels=[[1]])
        m = out.masks[0, int(out.scores[0].argmax())].numpy()
        full = np.zeros((h, w), bool)
        full[r0:r0 + side, c0:c0 + side] = m
        yield full


def _crossing_nuclei(labels, tiling):
    """Ids of nuclei whose pixels lie in more than one core, with at least a quarter of
    them outside the core that holds the central point."""
    from scipy import ndimage

    ids = []
    for k, sl in enumerate(ndimage.find_objects(labels)):
        if sl is None:
            continue
        g = labels[sl] == k + 1
        rr, cc = np.nonzero(g)
        own = tiling.owner(*central_point(labels == k + 1))
        inside = own.contains(rr + sl[0].start, cc + sl[1].start, core=True)
        if (~inside).mean() >= 0.25:
            ids.append(k + 1)
    return ids


def test_a_click_on_a_nucleus_across_a_core_border_gives_the_whole_nucleus(tiled, demo, scene):
    image, labels, limits = scene
    tiling = tiled.tiled.tiling
    ids = _crossing_nuclei(labels, tiling)
    assert len(ids) >= 12
    ids = ids[:16]
    gts = [labels == i for i in ids]
    pts = [central_point(g) for g in gts]
    t_ious, c_ious, far_t, far_c, cuts = [], [], [], [], 0
    for g, pt, crop in zip(gts, pts, _crop_masks(demo, image, limits, pts)):
        masks, scores, _ = tiled.predict(points=[pt], labels=[1])
        res = tiled.last_tiled
        assert len(res.windows) >= 2 and res.window == tiling.owner(*pt).index
        m = _best(masks, scores)
        cuts += res.cut  # a small nucleus is well inside the decoded windows
        t_ious.append(_iou(m, g))
        c_ious.append(_iou(crop, g))
        # the part of the nucleus in other cores than the click's: found as in the crop
        own = np.zeros_like(g)
        r0, c0, r1, c1 = tiling.windows[res.window].core
        own[r0:r1, c0:c1] = True
        far = g & ~own
        far_t.append((m & far).sum() / far.sum())
        far_c.append((crop & far).sum() / far.sum())
    assert np.mean(t_ious) >= np.mean(c_ious) - 0.05, (t_ious, c_ious)
    assert np.mean(far_t) >= np.mean(far_c) - 0.05, (far_t, far_c)
    assert np.mean(t_ious) > 0.5 and cuts <= 1


def test_one_click_per_nucleus_tiled_matches_crops_and_beats_untiled(tiled, demo, scene):
    image, labels, limits = scene
    ids = np.unique(labels)[1:]
    ids = np.random.default_rng(0).choice(ids, 48, replace=False)
    gts = [labels == i for i in ids]
    pts = [central_point(g) for g in gts]
    untiled = Predictor(demo, device="cpu", precision="fp32")
    emb = untiled.set_image(image, contrast_limits=limits, tiling=None)
    assert untiled.tiled is None and emb.original_size == (SIZE, SIZE)
    t_ious, u_ious, c_ious = [], [], []
    for g, pt, crop in zip(gts, pts, _crop_masks(demo, image, limits, pts)):
        t_ious.append(_iou(_best(*tiled.predict(points=[pt], labels=[1])[:2]), g))
        u_ious.append(_iou(_best(*untiled.predict(points=[pt], labels=[1])[:2]), g))
        c_ious.append(_iou(crop, g))
    t, u, c = np.mean(t_ious), np.mean(u_ious), np.mean(c_ious)
    assert t >= u + 0.25, (t, u)
    assert abs(t - c) <= 0.03, (t, c)


def test_stitching_is_exact_where_one_window_holds_the_mask(tiled, scene):
    tiling = tiled.tiled.tiling
    # a click that only one window holds (the first window's top-left core: no overlap)
    pt = (40.0, 50.0)
    res = decode_tiled(tiled, tiled.tiled, points=[pt], labels=[1])
    assert isinstance(res, TiledPrediction) and res.windows == [0] and res.window == 0
    ref = tiled.predict_batch(embedding=tiled.tiled.embeddings[0], points=[[pt]], labels=[[1]])
    expect = np.zeros((3, SIZE, SIZE), bool)
    expect[(slice(None),) + tiling.windows[0].slices] = ref.masks[0].numpy()
    assert np.array_equal(res.masks, expect)
    # (the cached decoder may serve one of the two: equal up to float rounding)
    np.testing.assert_allclose(res.scores, ref.scores[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(res.logits, ref.logits[0].numpy(), atol=1e-4)
    # a click in the overlap of four windows: each pixel equals the window it is deepest in
    pt = (tiling.windows[0].outer[2] - 20.0, tiling.windows[0].outer[3] - 20.0)
    res = decode_tiled(tiled, tiled.tiled, points=[pt], labels=[1])
    assert len(res.windows) == 4
    covered = np.zeros((SIZE, SIZE), bool)
    for i in res.windows:
        covered[tiling.windows[i].slices] = True
    assert not res.masks[:, ~covered].any()  # outside the decoded windows: background


def test_stitched_pixels_come_from_the_deepest_window(tiled):
    tiling = tiled.tiled.tiling
    pt = (tiling.windows[6].outer[0] + 10.0, tiling.windows[6].outer[1] + 10.0)
    res = decode_tiled(tiled, tiled.tiled, points=[pt], labels=[1], multimask=False)
    outs = {i: tiled.predict_batch(embedding=tiled.tiled.embeddings[i], multimask=False,
                                   points=[[np.subtract(pt, tiling.windows[i].offset)]],
                                   labels=[[1]]).masks[0, 0].numpy() for i in res.windows}
    depth = np.full((len(res.windows), SIZE, SIZE), -1.0)
    for k, i in enumerate(res.windows):
        depth[k][tiling.windows[i].slices] = tiling.depth(tiling.windows[i])
    deepest = np.argmax(depth, 0)  # ties: the first decoded window, as the stitcher
    for k, i in enumerate(res.windows):
        win = tiling.windows[i]
        mine = (deepest == k)[win.slices] & (depth[k][win.slices] >= 0)
        assert np.array_equal(res.masks[0][win.slices][mine], outs[i][mine])


def test_box_and_mask_prompt_follow_the_primary_window(tiled, scene):
    _, labels, _ = scene
    tiling = tiled.tiled.tiling
    ids = _crossing_nuclei(labels, tiling)[:10]
    box_ious, refined, alone = [], [], []
    for i in ids:
        g = labels == i
        rr, cc = np.nonzero(g)
        box = [rr.min(), cc.min(), rr.max(), cc.max()]
        masks, scores, logits = tiled.predict(box=box, multimask=False)
        box_ious.append(_iou(masks[0], g))
        # refine with the logits: the predictor knows their window
        pt = central_point(g)
        m1, _, lg1 = tiled.predict(points=[pt], labels=[1], box=box, mask_input=logits[0],
                                   multimask=False)
        refined.append(_iou(m1[0], g))
        # the same logits given in the frame of another decoded window: the same masks
        a = tiled.last_tiled.window
        b = [w for w in tiled.last_tiled.windows if w != a][0]
        oa, ob = tiling.windows[a].offset, tiling.windows[b].offset
        lg_b = shift_logits(lg1[0], (oa[0] - ob[0]) / 2, (oa[1] - ob[1]) / 2)  # 2 px per logit
        res = decode_tiled(tiled, tiled.tiled, points=[pt], labels=[1], box=box,
                           mask_input=lg_b, mask_window=b, multimask=False)
        assert res.window == a
        alone.append(_iou(res.masks[0], m1[0]))
    assert np.mean(box_ious) > 0.5 and np.mean(refined) > 0.5
    assert np.mean(alone) > 0.95


def test_shift_logits_moves_by_whole_pixels_and_fills_with_the_lowest():
    a = np.full((16, 16), -8.0, np.float32)
    a[5:8, 6:9] = 4.0
    b = shift_logits(a, 2, -3)
    assert np.array_equal(b[7:10, 3:6], a[5:8, 6:9]) and b[:2].max() == -8.0
    assert (b > 0).sum() == 9


def test_a_large_box_is_clipped_per_window_without_the_images_pixels(tiled):
    """Without the pixels no zoomed-out view can be encoded (tests/test_tiled_zoom.py: with
    them, the box is decoded in a view): clipped to the windows holding its centre."""
    import dataclasses

    box = [100, 100, 700, 800]  # larger than a 256 px window
    blind = dataclasses.replace(tiled.tiled, image=None)
    res = decode_tiled(tiled, blind, box=box, multimask=False)
    centre = (400, 450)
    assert res.window == tiled.tiled.tiling.owner(*centre).index and res.view is None
    assert res.windows
    assert all(tiled.tiled.tiling.windows[i].contains(*centre) for i in res.windows)
    # with them, the box is also decoded in a view that shows all of it, and the result
    # the model scores higher is kept
    zoomed = decode_tiled(tiled, tiled.tiled, box=box, multimask=False)
    view = next(reversed(tiled.tiled.views))
    assert Window(-1, (-1, -1), view, view).contains([100, 700], [100, 800]).all()
    assert zoomed.scores.max() >= res.scores.max()
    assert (zoomed.view is None) == (zoomed.windows == res.windows)


def test_predict_before_and_after_tiling_and_embedding_access(demo, scene):
    image, _, limits = scene
    p = Predictor(demo, device="cpu", precision="fp32")
    tiled_emb = p.set_image(image[:300, :300], contrast_limits=limits)
    assert p.tiled is None and tiled_emb.original_size == (300, 300)  # <= 1.5 x 256
    emb = p.set_image(image[:400, :200], contrast_limits=limits)  # 400 > 384: tiled
    assert isinstance(emb, TiledEmbedding) and len(emb.tiling) == 2
    with pytest.raises(RuntimeError, match="the image is tiled"):
        p.embedding  # noqa: B018
    masks, scores, logits = p.predict(points=[[300, 100]], labels=[1])
    assert masks.shape == (3, 400, 200) and logits.shape == (3, 128, 128)
    q = Predictor(demo, device="cpu", precision="fp32")
    q.set_embedding(emb)
    m2, _, _ = q.predict(points=[[300, 100]], labels=[1])
    assert np.array_equal(masks, m2)
    p.set_image(image[:400, :200], contrast_limits=limits, tiling=None)
    assert p.tiled is None and p.embedding.original_size == (400, 200)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(points=[[1030, 10]], labels=[1]), ValueError, r"outside|within|image"),
    (dict(points=[[-1, 10]], labels=[1]), ValueError, r"outside|within|image"),
    (dict(points=[[10, 10]], labels=[2]), ValueError, r"label"),
    (dict(labels=[1]), ValueError, "labels were given without points"),
    (dict(), ValueError, "give at least one prompt"),
    (dict(box=[10, 10, 5, 20]), ValueError, "inverted"),
    (dict(mask_input=np.zeros((128, 128))), ValueError, "mask_window"),
    (dict(mask_input=np.zeros((32, 32)), points=[[10, 10]]), ValueError, r"\(128, 128\)"),
])
def test_bad_prompts_on_a_tiled_image(tiled, kwargs, err, match):
    with pytest.raises(err, match=match):
        decode_tiled(tiled, tiled.tiled, **kwargs)
    if "mask_input" not in kwargs or "points" in kwargs:
        with pytest.raises(err, match=match):
            tiled.predict(**kwargs)


def test_bad_mask_window(tiled):
    with pytest.raises(ValueError, match="not a window of this tiling"):
        decode_tiled(tiled, tiled.tiled, mask_input=np.zeros((128, 128)), mask_window=99)


def test_sam2_is_not_tiled(scene):
    from napari_sam.models.sam2.model import Sam2Config, Sam2Model

    model = Sam2Model(Sam2Config(image_size=128)).eval()
    model.model_id = "random:sam2"
    p = Predictor(model, device="cpu", precision="fp32")
    image = scene[0][:300, :300]
    with pytest.raises(ValueError, match="tiling is not supported with SAM 2.1"):
        p.set_image(image, tiling=True)
    with pytest.raises(ValueError, match="tiling is not supported with SAM 2.1"):
        p.set_image(image, tiling=(128, 16))
    fake = TiledEmbedding(Tiling((300, 300), 128, 16), [], "random:sam2")
    with pytest.raises(ValueError, match="not supported with SAM 2.1"):
        p.set_embedding(fake)
    with pytest.raises(ValueError, match="not supported with SAM 2.1"):
        decode_tiled(p, fake, points=[[10, 10]])
    torch.manual_seed(0)
    emb = p.set_image(image)  # "auto" never tiles SAM 2.1
    assert p.tiled is None and emb.original_size == (300, 300)


class _Everything:
    """A stand-in predictor whose every candidate is the whole window (masks all True)."""

    img_size, low_res_size, sam2 = 256, 128, None

    def predict_batch(self, embedding=None, points=None, labels=None, boxes=None,
                      mask_inputs=None, multimask=True, upsample=True):
        from napari_sam.predictor import BatchPrediction

        n = 3 if multimask else 1
        h, w = embedding
        return BatchPrediction(masks=torch.ones((1, n, h, w), dtype=torch.bool),
                               scores=torch.full((1, n), 0.5),
                               logits=torch.full((1, n, 128, 128), 5.0))


def _whole_windows(shape):
    tiling = Tiling(shape, 256, 32)
    return TiledEmbedding(tiling, [w.shape for w in tiling.windows], "stand-in")


def test_cut_when_the_mask_reaches_an_inner_edge_of_the_decoded_windows():
    emb = _whole_windows((1024, 1024))
    inner = decode_tiled(_Everything(), emb, points=[[500, 500]])  # in one core, inside
    assert inner.cut and inner.cuts.all()
    covered = np.zeros((1024, 1024), bool)
    for i in inner.windows:
        covered[emb.tiling.windows[i].slices] = True
    assert np.array_equal(inner.masks[0], covered)  # exactly the decoded windows
    single = decode_tiled(_Everything(), _whole_windows((200, 240)), points=[[100, 100]])
    assert not single.cut and single.masks.all()  # one window: only image borders


def test_negative_points_only_and_a_mask_with_a_negative_point(tiled):
    """As untiled: negative points alone decode (in the windows that hold them)."""
    res = decode_tiled(tiled, tiled.tiled, points=[[500, 500]], labels=[0])
    assert res.window == tiled.tiled.tiling.owner(500, 500).index
    lg = res.logits[0]
    res2 = decode_tiled(tiled, tiled.tiled, points=[[500, 500]], labels=[0], mask_input=lg)
    assert res2.window == res.window and res2.masks.shape == (3, SIZE, SIZE)
