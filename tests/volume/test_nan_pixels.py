"""Images with scattered NaN pixels (missing measurements): a clicked object propagates as in
the same image without them. Every contrast was NaN when any pixel of a mask or its ring was,
so the fade rule never fired and objects ran through the whole stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.synthetic import nuclei_3d
from napari_sam.volume.stop_rules import contrast_and_error

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-nuclei-3d"


def _with_nan(img: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.where(rng.random(img.shape) < fraction, np.nan, img.astype(np.float32))


def test_contrast_leaves_out_nan_and_inf_pixels():
    img = np.full((20, 20), 10.0)
    img[5:15, 5:15] = 50.0
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    holes = img.copy()
    holes[7, 7], holes[3, 10], holes[12, 12] = np.nan, np.nan, np.inf
    c, e = contrast_and_error(holes, mask)
    assert c[0] == pytest.approx(40.0) and e[0] == pytest.approx(0.0)
    nothing = np.full((20, 20), np.nan)
    assert np.isnan(contrast_and_error(nothing, mask)[0][0])


def _propagate_both(img, clicks, model):
    out = []
    for stack in (img, _with_nan(img)):
        emb = ns.embed(stack, model, device="cpu", precision="fp32")
        out.append(ns.segment_volume(
            emb, {k: [{"slice": z, "points": [[r, c]]}] for k, (z, r, c) in clicks.items()}))
    return out


def test_scattered_nan_pixels_do_not_let_clicked_nuclei_run_through_the_stack():
    """Five synthetic nuclei, one click each on its widest slice: with 1 % NaN pixels each
    object spans the slices it spans without them (it ran to the stack's ends: 0-15 for
    nuclei of 3-6 slices) and keeps its voxels (3D IoU >= 0.85 with the clean result)."""
    from scipy import ndimage as ndi

    s = nuclei_3d((16, 96, 96), seed=10001)
    lab = s.labels
    clicks = {}
    for lid in np.unique(lab)[1:6]:
        zs = np.nonzero((lab == lid).any((1, 2)))[0]
        z = int(zs[np.argmax([(lab[k] == lid).sum() for k in zs])])
        r, c = np.unravel_index(np.argmax(ndi.distance_transform_edt(lab[z] == lid)), lab[z].shape)
        clicks[int(lid)] = (z, int(r), int(c))
    clean, holes = _propagate_both(s.image, clicks, ns.load_model("demo"))
    for k in clicks:
        assert holes.slice_range[k] == clean.slice_range[k], (k, holes.stop_reasons[k])
        a, b = clean.labels == k, holes.labels == k
        assert (a & b).sum() / (a | b).sum() >= 0.85, k


@pytest.mark.skipif(not REAL.exists(), reason=f"the real development stack is not here ({REAL})")
def test_nan_pixels_in_the_real_stack_keep_a_nucleus_to_its_slices():
    """The helper's case: nucleus at (36, 30) on slice 12 of the real stack spans slices
    11-12; with 1 % NaN pixels it ran over all 31 slices."""
    import tifffile

    img = tifffile.imread(REAL / "image.tif")
    clean, holes = _propagate_both(img, {1: (12, 36, 30)}, ns.load_model("demo"))
    assert holes.slice_range[1] == clean.slice_range[1]
    assert clean.slice_range[1][1] - clean.slice_range[1][0] <= 3
