"""What a notebook user meets as the last expression of a cell or in an error: the model
mismatch of segment_everything names both models and the fix."""

from __future__ import annotations

import pytest
import torch

from stacks import blob_stack
from tiny_configs import TINY_CNN


def _tiny(seed: int, model_id: str):
    """A random tiny CNN-encoder model (128 px input) with the id a loader would give it."""
    from napari_sam.models.build import SamConfig, build_sam

    torch.manual_seed(seed)
    model = build_sam(SamConfig(**TINY_CNN)).eval()
    model.model_id = model_id
    return model


@pytest.fixture(scope="module")
def models():
    return _tiny(0, "demo:abc123"), _tiny(1, "file:def456")


def test_segment_everything_with_another_model_names_both_and_the_fix(models):
    """As segment_volume (Predictor.check_embedding) words it, before any work."""
    import napari_sam as ns

    demo, other = models
    emb = ns.embed(blob_stack(z=3, size=48), demo, device="cpu")
    with pytest.raises(ValueError, match=r"^the stack embeddings were made by model "
                       r"'demo:abc123' but the model given is 'file:def456'; recompute them "
                       r"with this model \(napari_sam.embed\(stack, model\)\)"):
        ns.segment_everything(emb, other, points_per_side=4)
    assert emb.encoder_calls == 0
    with pytest.raises(ValueError, match=r"^the embedding was made by model 'demo:abc123' but "
                       r"this predictor uses 'file:def456'; recompute it with this model$"):
        ns.Predictor(other, device="cpu").check_embedding(emb[0])
