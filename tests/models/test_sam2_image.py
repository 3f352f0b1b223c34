"""2D clicking with a SAM 2.1 model through napari_sam.Predictor, against Meta's
``SAM2ImagePredictor`` on identical random weights (Hiera-T trunk, 256 px input).

torchvision is not installed here and Meta's predictor imports its transforms; the test
gives it a stand-in module with the same three transforms written in torch (ToTensor:
uint8 HWC -> float CHW / 255; Resize: bilinear, antialiased, align_corners=False, as
torchvision's tensor resize; Normalize).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip(
    "sam2.modeling.backbones.hieradet",
    reason="Meta's sam2 (test-only reference) is not importable: install the testing extra "
    "(hydra-core, iopath), then SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps "
    "sam2==1.1.0")

from napari_sam import Predictor  # noqa: E402
from napari_sam.models.sam2.decoder import decoder_keys_from_meta  # noqa: E402
from napari_sam.models.sam2.model import Sam2Config, Sam2Model  # noqa: E402

from .test_sam2 import _reference_sam2  # noqa: E402

SIZE = 256


class _ToTensor:
    def __call__(self, x):
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float() / 255.0


class _Resize(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False,
                             antialias=True)[0]


class _Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).reshape(3, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@pytest.fixture(scope="module")
def pair():
    """(Meta's SAM2ImagePredictor, our Predictor) on the same random weights."""
    fake = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor, transforms.Resize, transforms.Normalize = _ToTensor, _Resize, _Normalize
    fake.transforms = transforms
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.transforms")}
    sys.modules.update({"torchvision": fake, "torchvision.transforms": transforms})
    try:
        sys.modules.pop("sam2.utils.transforms", None)
        sys.modules.pop("sam2.sam2_image_predictor", None)
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        base = _reference_sam2(SIZE)
        gen = torch.Generator().manual_seed(21)
        sd = {k: torch.randn(v.shape, generator=gen) * 0.05
              for k, v in base.state_dict().items()}
        base.load_state_dict(sd)
        ref = SAM2ImagePredictor(base)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    e = SIZE // 16
    ref._bb_feat_sizes = [(4 * e, 4 * e), (2 * e, 2 * e), (e, e)]  # Meta's assume 1024 px
    ours = Sam2Model(Sam2Config(image_size=SIZE)).eval()
    ours.load_state_dict(decoder_keys_from_meta(sd), strict=True)
    ours.model_id = "random:21"
    return ref, Predictor(ours, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:90, :120]
    blob = ((yy - 40) ** 2 + (xx - 70) ** 2 < 500) * 150
    return (rng.integers(0, 60, (90, 120, 3)) + blob[..., None]).astype(np.uint8)


def _compare(ref, pred, *, points=None, labels=None, box=None, mask_input=None,
             multimask=True):
    xy = None if points is None else np.asarray(points, np.float32)[:, ::-1].copy()
    xyxy = None if box is None else np.asarray(box, np.float32)[[1, 0, 3, 2]]
    with torch.no_grad():
        m_ref, s_ref, l_ref = ref.predict(point_coords=xy, point_labels=labels, box=xyxy,
                                          mask_input=mask_input, multimask_output=multimask)
    m, s, lg = pred.predict(points=points, labels=labels, box=box, mask_input=mask_input,
                            multimask=multimask)
    assert m.shape == m_ref.shape and m.dtype == bool
    assert (m == m_ref.astype(bool)).mean() >= 0.999
    assert np.abs(s - s_ref).max() <= 1e-4
    assert (np.sign(lg) == np.sign(l_ref)).mean() >= 0.999
    return m, s, lg


def test_image_features_and_high_res_features_equal_the_reference(pair, image):
    ref, pred = pair
    ref.set_image(image)
    emb = pred.set_image(image, contrast_limits=(0, 255))
    assert emb.family == "sam2" and emb.original_size == (90, 120)
    assert emb.input_size == (SIZE, SIZE) and pred.encoder_calls == 1
    assert (emb.features - ref._features["image_embed"][0]).abs().max() <= 1e-4
    for ours, theirs in zip(emb.high_res, ref._features["high_res_feats"]):
        assert ours.shape == theirs[0].shape
        assert (ours - theirs[0]).abs().max() <= 1e-4


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
def test_clicks_boxes_and_mask_prompts_equal_the_reference(pair, image, multimask):
    ref, pred = pair
    ref.set_image(image)
    pred.set_image(image, contrast_limits=(0, 255))
    m, _, lg = _compare(ref, pred, points=[[40, 70]], labels=[1], multimask=multimask)
    assert m.shape == ((3 if multimask else 1), 90, 120)
    assert 0.02 < m.mean() < 0.98  # masks neither empty nor everything: a real comparison
    _compare(ref, pred, points=[[40, 70], [10, 10]], labels=[1, 0], multimask=multimask)
    _compare(ref, pred, box=[20, 45, 62, 95], multimask=multimask)
    _compare(ref, pred, points=[[40, 70]], labels=[1], box=[20, 45, 62, 95],
             multimask=multimask)
    _compare(ref, pred, points=[[40, 70]], labels=[1], mask_input=lg[:1],
             multimask=multimask)


def test_predict_batch_decodes_several_objects_as_the_reference(pair, image):
    ref, pred = pair
    ref.set_image(image)
    pred.set_image(image, contrast_limits=(0, 255))
    boxes = np.array([[20, 45, 62, 95], [5, 5, 40, 50]], np.float32)
    with torch.no_grad():
        m_ref, s_ref, _ = ref.predict(box=boxes[:, [1, 0, 3, 2]], multimask_output=True)
    out = pred.predict_batch(boxes=boxes, multimask=True)
    assert out.masks.shape == (2, 3, 90, 120) == m_ref.shape
    assert (out.masks.numpy() == m_ref.astype(bool)).mean() >= 0.999
    assert (out.scores.numpy() - s_ref).__abs__().max() <= 1e-4
    assert pred.decoder_calls >= 1


def test_an_embedding_round_trips_through_a_file_and_refuses_other_weights(pair, image,
                                                                           tmp_path):
    from napari_sam.models.sam2.image_predictor import Sam2ImageEmbedding

    _, pred = pair
    emb = pred.set_image(image, contrast_limits=(0, 255))
    masks, scores, _ = pred.predict(points=[[40, 70]])
    again = Sam2ImageEmbedding.load(emb.save(tmp_path / "e.npz"))
    pred.set_embedding(again)
    masks2, scores2, _ = pred.predict(points=[[40, 70]])
    assert np.array_equal(masks, masks2) and np.allclose(scores, scores2)
    again.model_id = "other"
    with pytest.raises(ValueError, match="made by model 'other' but this predictor uses "
                       "'random:21'; recompute it with this model"):
        pred.set_embedding(again)
    with pytest.raises(ValueError, match="torch backend only"):
        Predictor(pred.model, device="cpu", backend="onnx")
