"""Prompts a script gets wrong without a word (session 33's scripting walk-through): a mask
prompt alone gave three empty masks with scores, and ``multimask="no"`` returned three
masks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import napari_sam as ns
from napari_sam import synthetic


@pytest.fixture(scope="module")
def nucleus():
    s = synthetic.nuclei_2d((96, 96), seed=5)
    pred = ns.Predictor(ns.load_model("demo"), device="cpu", precision="fp32")
    pred.set_image(s.image)
    obj = s.labels == np.unique(s.labels)[1]
    return pred, obj


def test_a_mask_prompt_alone_that_selects_nothing_warns(nucleus):
    pred, obj = nucleus
    prompt = pred.mask_prompt(obj)
    with pytest.warns(UserWarning, match="a mask prompt alone gave only empty masks: give a "
                                         "point inside the object"):
        masks, scores, _ = pred.predict(mask_input=prompt)
    assert not masks.any()
    point = np.argwhere(obj)[len(np.argwhere(obj)) // 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with a point: no warning, the object
        masks, _, _ = pred.predict(points=[point], mask_input=prompt, multimask=False)
    assert (masks[0] & obj).sum() / (masks[0] | obj).sum() > 0.8


@pytest.mark.parametrize("value", ["no", 0, None, 1.0])
def test_multimask_takes_true_or_false_only(nucleus, value):
    pred, obj = nucleus
    point = np.argwhere(obj)[0]
    with pytest.raises(TypeError, match=f"multimask must be True or False, not {value!r}"):
        pred.predict(points=[point], multimask=value)
    assert len(pred.predict(points=[point], multimask=np.bool_(False))[0]) == 1
