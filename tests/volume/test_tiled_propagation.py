"""segment_volume on tiled stack embeddings (napari_sam.volume.tiled): routing, frames, quality."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

import napari_sam as ns
from napari_sam.tiled_stack import TiledStackEmbeddings
from napari_sam.tiling import Tiling
from napari_sam.volume.annotations import normalize_prompts
from napari_sam.volume.tiled import anchor, window_prompts


def disc(shape, centre, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r


def test_prompts_move_into_the_owner_window_frame():
    tiling = Tiling((400, 300), 256, 32)
    mask = disc((400, 300), (350, 250), 8)
    objs = normalize_prompts({
        3: [{"slice": 1, "points": [[300, 200], [10, 10]], "labels": [1, 0]},
            {"slice": 2, "box": [100, 30, 390, 60]}],
        4: [{"slice": 0, "mask": mask}],
    }, (3, 400, 300))
    win = tiling.owner(*anchor(objs[0]))
    assert anchor(objs[0]) == (300.0, 200.0) and win.index == 3 and win.offset == (144, 44)
    moved = window_prompts(objs[0], win)
    np.testing.assert_array_equal(moved.annotations[1].points, [[156, 156]])  # (10, 10) dropped
    np.testing.assert_array_equal(moved.annotations[1].labels, [1])
    np.testing.assert_array_equal(moved.annotations[2].box, [0, 0, 246, 16])  # clipped
    assert tiling.owner(*anchor(objs[1])).index == 3
    crop = window_prompts(objs[1], win).annotations[0].mask
    assert crop.shape == (256, 256) and crop.sum() == mask.sum()
    np.testing.assert_array_equal(crop, mask[144:400, 44:300])


def test_masks_come_back_in_the_whole_stacks_frame_with_their_ids(tiny_sam):
    """Drawn masks are taken as they are: the labels on their slices are exactly them."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 1000, (3, 400, 300)).astype(np.uint16)
    emb = ns.embed(stack, tiny_sam, device="cpu")
    assert isinstance(emb, TiledStackEmbeddings) and len(emb.tiling) == 4
    masks = {5: disc((400, 300), (350, 250), 9), 9: disc((400, 300), (40, 60), 12),
             7: disc((400, 300), (200, 150), 20)}  # 7 straddles the core boundaries
    prompts = {k: [{"slice": 1, "mask": m}] for k, m in masks.items()}
    res = ns.segment_volume(emb, prompts, max_slices=0)
    expected = np.zeros((400, 300), np.uint8)
    for k, m in masks.items():
        expected[m] = k
    np.testing.assert_array_equal(res.labels[1], expected)
    assert res.labels.shape == (3, 400, 300) and res.labels.dtype == np.uint8
    assert not res.labels[[0, 2]].any()
    assert res.slice_range == {5: (1, 1), 7: (1, 1), 9: (1, 1)}
    assert sorted(res.stop_reasons) == [5, 7, 9]
    assert {c["id"] for c in res.chains} == {5, 7, 9}
    flat = ns.segment_volume(ns.embed(stack, tiny_sam, device="cpu", tiling=None), prompts,
                             max_slices=0)
    np.testing.assert_array_equal(flat.labels, res.labels)


def test_objects_of_different_windows_keep_the_overlap_rule(tiny_sam):
    """Two drawn masks overlapping across a core boundary: annotated (distance 0) both, the
    pixels go by the usual rule, not by which window ran last."""
    stack = np.random.default_rng(1).integers(0, 1000, (2, 400, 300)).astype(np.uint16)
    emb = ns.embed(stack, tiny_sam, device="cpu")
    a, b = disc((400, 300), (100, 60), 30), disc((400, 300), (100, 250), 30)
    b |= disc((400, 300), (100, 120), 10)  # b reaches into a's window
    res = ns.segment_volume(emb, {1: [{"slice": 0, "mask": a}], 2: [{"slice": 0, "mask": b}]},
                            max_slices=0)
    ref = ns.segment_volume(ns.embed(stack, tiny_sam, device="cpu", tiling=None),
                            {1: [{"slice": 0, "mask": a}], 2: [{"slice": 0, "mask": b}]},
                            max_slices=0)
    np.testing.assert_array_equal(res.labels, ref.labels)


def test_progress_counts_the_stacks_slices_over_the_windows_used(tiny_sam):
    stack = np.random.default_rng(2).integers(0, 1000, (3, 400, 300)).astype(np.uint16)
    emb = ns.embed(stack, tiny_sam, device="cpu")
    import napari_sam.volume.tiled as T

    seen = []
    prompts = {1: [{"slice": 1, "points": [[40, 40]]}],
               2: [{"slice": 1, "points": [[380, 280]]}]}
    # each object in its window (the tiny random model's masks fill the windows, so its
    # decode would take both to zoomed-out views: tested apart)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(T, "decoded_frame", lambda *a, **k: None)
        ns.segment_volume(emb, prompts, progress=lambda d, t: seen.append((d, t)))
    assert seen[:2] == [(0, 6), (0, 6)]  # each object's frame chosen: a GUI may cancel
    done = [d for d, _ in seen[2:]]  # 3 slices x 2 objects
    assert seen[-1] == (6, 6) and {t for _, t in seen[2:]} == {6}
    assert done == sorted(set(done))  # never back, never twice, over both windows


# ----------------------------------------------------------------- quality (demo model)
def one_click_per_nucleus(labels):
    """{id: one click at the deepest pixel of the nucleus's largest slice}."""
    prompts = {}
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        m = labels[sl] == i
        z = int(np.argmax(m.sum((1, 2))))
        d = ndi.distance_transform_edt(m[z])
        r, c = np.unravel_index(np.argmax(d), d.shape)
        prompts[i] = [{"slice": sl[0].start + z,
                       "points": [[sl[1].start + int(r), sl[2].start + int(c)]]}]
    return prompts


def iou3d(pred, gt, i):
    g, p = gt == i, pred == i
    return (g & p).sum() / max(1, (g | p).sum())


@pytest.fixture(scope="module")
def small_nuclei():
    from napari_sam.synthetic import nuclei_3d

    demo = ns.load_model("demo")
    sample = nuclei_3d((6, 512, 512), seed=1, radius=(7, 11), anisotropy=3.0, n_objects=25)
    prompts = one_click_per_nucleus(sample.labels)
    emb = ns.embed(sample.image, demo, device="cpu")
    return sample, prompts, emb, ns.segment_volume(emb, prompts)


def test_tiled_propagation_matches_crops_and_beats_the_shrunk_stack(small_nuclei):
    sample, prompts, emb, res = small_nuclei
    demo, gt = emb.model, sample.labels
    assert isinstance(emb, TiledStackEmbeddings) and len(emb.tiling) == 9
    assert len(prompts) >= 20
    tiled = np.mean([iou3d(res.labels, gt, i) for i in prompts])
    flat = ns.segment_volume(ns.embed(sample.image, demo, device="cpu", tiling=None), prompts)
    untiled = np.mean([iou3d(flat.labels, gt, i) for i in prompts])
    # the same at native scale on non-overlapping 256 px crops (nuclei by their click)
    crops = np.zeros_like(res.labels)
    for r in (0, 256):
        for c in (0, 256):
            sub = {i: [{"slice": p[0]["slice"],
                        "points": [[p[0]["points"][0][0] - r, p[0]["points"][0][1] - c]]}]
                   for i, p in prompts.items()
                   if r <= p[0]["points"][0][0] < r + 256 and c <= p[0]["points"][0][1] < c + 256}
            if sub:
                e = ns.embed(sample.image[:, r:r + 256, c:c + 256], demo, device="cpu",
                             contrast_limits=emb.contrast_limits)
                got = ns.segment_volume(e, sub).labels
                view = crops[:, r:r + 256, c:c + 256]
                view[got > 0] = got[got > 0]
    cropped = np.mean([iou3d(crops, gt, i) for i in prompts])
    print(f"mean 3D IoU: tiled {tiled:.3f}, crops {cropped:.3f}, untiled {untiled:.3f}")
    assert tiled >= cropped - 0.05
    assert tiled >= untiled + 0.3


def test_every_click_carries_its_id_and_nothing_else_appears(small_nuclei):
    sample, prompts, _, res = small_nuclei
    assert set(np.unique(res.labels)) <= {0, *prompts}
    hits = [res.labels[p[0]["slice"], p[0]["points"][0][0], p[0]["points"][0][1]] == i
            for i, p in prompts.items()]
    assert np.mean(hits) >= 0.9
    for i, (lo, hi) in res.slice_range.items():
        zs = np.flatnonzero((res.labels == i).any((1, 2)))
        assert (zs.min(), zs.max()) == (lo, hi)


def test_a_nucleus_across_a_core_boundary_propagates_whole(small_nuclei):
    """The nucleus lying most across an inner core boundary comes out as it does on a crop
    centred on it (its window holds it whole)."""
    sample, prompts, emb, res = small_nuclei
    gt = sample.labels
    cuts = sorted({w.core[1] for w in emb.tiling.windows} - {0})

    def straddle(i):  # pixels of the nucleus on the smaller side of its nearest cut
        cols = np.nonzero(gt == i)[2]
        return max(min((cols < x).sum(), (cols >= x).sum()) for x in cuts)

    i = max(prompts, key=straddle)
    assert straddle(i) > 20
    (zz, rr, cc) = (int(v.mean()) for v in np.nonzero(gt == i))
    r0, c0 = min(max(rr - 128, 0), 512 - 256), min(max(cc - 128, 0), 512 - 256)
    p = prompts[i][0]
    crop = ns.embed(sample.image[:, r0:r0 + 256, c0:c0 + 256], emb.model, device="cpu",
                    contrast_limits=emb.contrast_limits)
    ref = ns.segment_volume(crop, {i: [{"slice": p["slice"], "points": [
        [p["points"][0][0] - r0, p["points"][0][1] - c0]]}]}).labels == i
    got = res.labels[:, r0:r0 + 256, c0:c0 + 256] == i
    assert (res.labels == i).sum() == got.sum()  # nothing of it outside the crop
    assert (got & ref).sum() / (got | ref).sum() >= 0.8
    cols = np.nonzero(res.labels == i)[2]
    x = min(cuts, key=lambda x: abs(x - cc))
    assert (cols < x).sum() > 10 and (cols >= x).sum() > 10  # on both sides of the cut
