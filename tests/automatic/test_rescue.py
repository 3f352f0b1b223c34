"""Rescued masks of segment everything (``rescue_margin``, issue #23): masks just under the
thresholds are kept where nothing else covers their pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam.automatic.crops import Candidates
from napari_sam.automatic.image2d import RESCUE_MAX_OVERLAP, add_rescued
from napari_sam.automatic.results import MaskRecord

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-nuclei-3d"


def _record(i, bbox):
    r0, c0, r1, c1 = bbox
    return MaskRecord(id=i, bbox=bbox, area=(r1 - r0) * (c1 - c0), predicted_iou=0.5,
                      stability_score=0.6, point_coords=(r0, c0), crop_box=(0, 0, 20, 20),
                      segmentation=None, visible_area=(r1 - r0) * (c1 - c0))


def test_add_rescued_paints_free_objects_only_on_free_pixels():
    labels = np.zeros((20, 20), np.int32)
    labels[0:10, 0:10] = 1
    kept, hidden = _record(1, (0, 0, 10, 10)), _record(0, (0, 0, 2, 2))
    more = np.zeros((20, 20), np.int32)
    more[9:19, 0:10] = 1  # 10 of its 100 pixels on object 1: rescued
    more[0:10, 12:20] = 2  # free: rescued
    more[2:8, 4:12] = 3  # 36 of 48 pixels on object 1: not rescued
    recs = [_record(1, (9, 0, 19, 10)), _record(2, (0, 12, 10, 20)), _record(3, (2, 4, 8, 12))]
    out, records, n = add_rescued(labels, [kept, hidden], more, recs)
    assert n == 2 and 0.1 <= RESCUE_MAX_OVERLAP < 0.5
    assert [r.id for r in records] == [1, 2, 3, 0]  # the old, the rescued, the hidden
    assert (out[0:10, 0:10] == 1).all()  # nothing painted over an object
    assert (out[10:19, 0:10] == 2).all() and records[1].visible_area == 90
    assert (out[0:10, 12:20] == 3).all() and records[2].visible_area == 80
    assert not (out == 4).any() and (labels[10:, :] == 0).all()  # the input is untouched


def _random_candidates(seed: int, n: int, drop: float):
    """(n, 4) random boxes (row0, col0, row1, col1), (n,) predicted IoUs and a random set
    keeping about 1 - ``drop`` of them."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 80, (n, 2), generator=g)
    boxes = torch.cat([xy, xy + torch.randint(5, 30, (n, 2), generator=g)], 1)
    iou = torch.rand(n, generator=g)
    return boxes, iou, torch.rand(n, generator=g) > drop


def test_candidate_nms_keeps_the_strict_set_as_it_was():
    """NMS runs within each set: the strict rows are what plain NMS of the strict masks
    keeps, whatever lenient masks lie beside them."""
    from napari_sam.automatic.boxes import batched_nms

    n = 40
    boxes, iou, strict = _random_candidates(0, n, 0.4)
    cand = Candidates(torch.zeros(n, 4, 4), iou, iou, boxes, torch.ones(n), torch.zeros(n, 2),
                      strict, torch.ones(n, dtype=torch.bool))
    out = cand.nms(0.3)
    idx = torch.arange(n)[strict][batched_nms(boxes[strict], iou[strict], 0.3)]
    assert sorted(out.iou[out.strict].tolist()) == sorted(iou[idx].tolist())
    assert sorted(out.iou[out.lenient].tolist()) == sorted(
        iou[batched_nms(boxes, iou, 0.3)].tolist())
    assert torch.all(out.iou[:-1] >= out.iou[1:])  # by decreasing predicted IoU


def test_candidate_nms_of_equal_sets_runs_once(monkeypatch):
    """Without a rescue margin (stacks) the two sets are one: one NMS, the same rows."""
    import napari_sam.automatic.crops as crops
    from napari_sam.automatic.boxes import batched_nms

    n = 30
    boxes, iou, both = _random_candidates(1, n, 0.3)
    calls = []
    monkeypatch.setattr(crops, "batched_nms", lambda *a: calls.append(1) or batched_nms(*a))
    cand = Candidates(torch.zeros(n, 4, 4), iou, iou, boxes, torch.ones(n), torch.zeros(n, 2),
                      both, both.clone())
    out = cand.nms(0.3)
    assert len(calls) == 1
    idx = torch.arange(n)[both][batched_nms(boxes[both], iou[both], 0.3)]
    assert sorted(out.iou.tolist()) == sorted(iou[idx].tolist())
    assert torch.equal(out.strict, out.lenient) and bool(out.strict.all())


def test_the_rescue_rule_for_stacks_has_one_home():
    from napari_sam.automatic import rescue_margin_for
    from napari_sam.automatic.params import make_params

    assert rescue_margin_for(0.1, 1) == 0.1 and rescue_margin_for(0.1, 2) == 0.0
    p = make_params("auto", None, 0.6, 0.7, 1.0, 0.7, 0, 0.7, 512 / 1500, 1, 0, None, True,
                    0.5)
    assert p.rescue_margin == 0.1
    assert p.for_slices(1).rescue_margin == 0.1 and p.for_slices(32).rescue_margin == 0.0
    assert p.for_slices(32).pred_iou_thresh == p.pred_iou_thresh  # nothing else changes


@pytest.fixture(scope="module")
def demo():
    from napari_sam.models.registry import load_model

    return load_model("demo")


def test_margin_zero_rescues_nothing_and_a_margin_finds_more(demo):
    from napari_sam.automatic import segment_everything
    from napari_sam.synthetic import nuclei_2d

    s = nuclei_2d((128, 128), seed=10003)
    off = segment_everything(s.image, demo, foreground="auto", rescue_margin=0.0)
    on = segment_everything(s.image, demo, foreground="auto", rescue_margin=0.1)
    assert off.stats["rescued"] == 0
    assert on.stats["rescued"] >= 0
    a, b = np.asarray(off.labels), np.asarray(on.labels)
    # the rescued objects only add labels where there were none
    assert np.array_equal(b[a > 0] > 0, np.ones(int((a > 0).sum()), bool))
    assert int(b.max()) == int(a.max()) + on.stats["rescued"]
    with pytest.raises(ValueError, match="rescue_margin"):
        segment_everything(s.image, demo, rescue_margin=1.5)


def _real_slice_f1(demo) -> dict[float, float]:
    """Mean F1@0.5 of segment everything on every other slice of the real development stack
    (slices with more than 3 nuclei), without rescue (0.0) and with it (0.1)."""
    if not REAL.is_dir():
        print(f"SKIP: the real development stack is not here ({REAL})")
        pytest.skip(f"the real development stack is not here ({REAL})")
    import tifffile

    from napari_sam.automatic import segment_everything
    from test_automatic import _f1

    img = tifffile.imread(REAL / "image.tif")
    gt = tifffile.imread(REAL / "labels.tif")
    scores = {0.0: [], 0.1: []}
    for z in range(0, img.shape[0], 2):
        if len(np.unique(gt[z])) <= 4:
            continue
        g = np.unique(gt[z], return_inverse=True)[1].reshape(gt[z].shape)
        for m in scores:
            res = segment_everything(img[z], demo, foreground="auto", rescue_margin=m)
            scores[m].append(_f1(g, np.asarray(res.labels)))
    means = {m: float(np.mean(v)) for m, v in scores.items()}
    print({m: round(v, 3) for m, v in means.items()})
    return means


@pytest.mark.slow
def test_rescued_masks_find_real_nuclei(demo):
    """On the real development stack's slices the demo model's thresholds (chosen on
    synthetic scenes) lost most nuclei: F1@0.5 0.41 without rescue, 0.61 with it (run 25);
    after the input smoothing 0.694 / 0.724 (run 36); run 37 finds them without rescue:
    0.762 / 0.755 (session 25)."""
    assert _real_slice_f1(demo)[0.1] >= 0.68


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="run 37 (the shipped demo model) gains nothing from "
                   "rescue on the real stack's slices: F1@0.5 0.762 without, 0.755 with "
                   "(session 25); runs 25 and 36 gained 0.20 and 0.03")
def test_rescue_gains_on_real_nuclei(demo):
    means = _real_slice_f1(demo)
    assert means[0.1] >= means[0.0] + 0.02


def test_stacks_never_rescue(demo):
    """Rescued fragments became false 3D objects (docs/benchmarks.md, "Rescued masks"):
    stacks segment without them, in the library and in ``napari-sam auto``'s slice path."""
    from napari_sam.automatic import segment_everything
    from napari_sam.synthetic import nuclei_3d

    s = nuclei_3d((4, 96, 96), seed=10004)
    kw = dict(foreground="auto", propagate=False)
    on = segment_everything(s.image, demo, rescue_margin=0.1, **kw)
    off = segment_everything(s.image, demo, rescue_margin=0.0, **kw)
    assert on.stats["rescued"] == 0
    np.testing.assert_array_equal(np.asarray(on.labels), np.asarray(off.labels))
