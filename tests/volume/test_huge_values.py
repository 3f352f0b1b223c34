"""A float64 stack of values beyond float32's range (1e40, 1e300: a stack in physical units,
or a product of two images) propagates as the same stack at its own scale. Its slices, read
as float32 for the stop rules, became inf: every contrast was NaN and objects ran through the
whole stack, with only numpy's "overflow encountered in cast" (session 33's scripting
walk-through)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sam as ns
from napari_sam.synthetic import nuclei_3d


@pytest.mark.parametrize("factor", [1e40, 1e300])
def test_a_stack_at_any_scale_propagates_as_at_its_own(factor):
    s = nuclei_3d((16, 96, 96), seed=10001)
    lab = s.labels
    prompts = {}
    for lid in np.unique(lab)[1:6]:
        zs = np.nonzero((lab == lid).any((1, 2)))[0]
        z = int(zs[np.argmax([(lab[k] == lid).sum() for k in zs])])
        r, c = np.unravel_index(np.argmax(ndi.distance_transform_edt(lab[z] == lid)), lab[z].shape)
        prompts[int(lid)] = [{"slice": z, "points": [[int(r), int(c)]]}]
    model = ns.load_model("demo")
    img = s.image.astype(np.float64)
    base = ns.segment_volume(ns.embed(img, model, device="cpu", precision="fp32"), prompts)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow in a cast
        scaled = ns.segment_volume(
            ns.embed(img * factor, model, device="cpu", precision="fp32"), prompts)
    assert scaled.slice_range == base.slice_range, scaled.stop_reasons
    assert max(hi - lo for lo, hi in base.slice_range.values()) < 15  # they do stop
    assert (scaled.labels == base.labels).mean() > 0.999
