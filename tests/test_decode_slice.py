"""decode_slice (the dock's previews and the replay of its slice commits) treats a box partly
outside the slice as the rest of the product does: clipped to the image."""

from __future__ import annotations

import numpy as np

import napari_sam as ns
from napari_sam.annotate.prompt_groups import DrawnPrompts
from napari_sam.annotation import decode_slice
from stacks import blob_stack


def test_a_box_partly_outside_is_clipped_as_predict_and_propagation_clip_it(tiny_sam):
    stack = blob_stack()
    emb = ns.embed(stack, tiny_sam, device="cpu")
    pred = emb.predictor
    none = np.zeros((0, 2)), np.zeros(0, np.int64)
    outside = DrawnPrompts(*none, np.array([-12.0, -9.0, 30.0, 80.0]))
    clipped = DrawnPrompts(*none, np.array([0.0, 0.0, 30.0, 63.0]))
    (a,) = decode_slice(pred, emb[2], 2, [("box", outside)])
    (b,) = decode_slice(pred, emb[2], 2, [("box", clipped)])
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)
    pred.set_embedding(emb[2])
    masks, scores, _ = pred.predict(box=[-12.0, -9.0, 30.0, 80.0], multimask=False)
    assert np.array_equal(a.masks, masks) and np.allclose(a.scores, scores)
