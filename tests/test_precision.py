"""The default precision a user gets: one decision for every surface, and masks that agree
with float32 ones (issue #29)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_sam import device as dv


@pytest.fixture
def cpu_bf16(monkeypatch):
    """A CPU with native bf16, whatever this one has; precision not set from outside."""
    monkeypatch.delenv(dv.PRECISION_ENV, raising=False)
    monkeypatch.setattr(dv, "cpu_bf16_feature", lambda: "avx512_bf16")


@pytest.fixture
def cpu_no_bf16(monkeypatch):
    monkeypatch.delenv(dv.PRECISION_ENV, raising=False)
    monkeypatch.setattr(dv, "cpu_bf16_feature", lambda: None)


@pytest.fixture
def seen(monkeypatch):
    """The dtypes every Predictor of the call resolved."""
    import napari_sam.predictor as pm

    got: list[torch.dtype] = []
    real = pm.resolve_precision

    def spy(precision, device):
        got.append(real(precision, device))
        return got[-1]

    monkeypatch.setattr(pm, "resolve_precision", spy)
    return got


def _surfaces(model) -> None:
    from napari_sam import Predictor, embed, segment_everything, segment_volume

    rng = np.random.default_rng(0)
    img = rng.random((40, 48))
    Predictor(model, device="cpu").set_image(img)
    emb = embed(np.stack([img, img, img]), model, device="cpu")
    segment_volume(emb, {1: {"slice": 1, "points": [[20, 24]]}})
    segment_everything(img, model, device="cpu", points_per_side=4)


def test_every_surface_uses_bf16_on_a_cpu_with_native_bf16(tiny_sam, cpu_bf16, seen):
    from napari_sam import Predictor

    _surfaces(tiny_sam)
    assert len(seen) >= 3 and set(seen) == {torch.bfloat16}
    pred = Predictor(tiny_sam, device="cpu")
    assert (pred.dtype, pred.precision) == (torch.bfloat16, "bf16")
    pred.set_image(np.random.default_rng(1).random((40, 48)))
    assert pred.embedding.features.dtype == torch.float32  # stored as float32 either way


def test_every_surface_stays_fp32_on_a_cpu_without_native_bf16(tiny_sam, cpu_no_bf16, seen):
    _surfaces(tiny_sam)
    assert len(seen) >= 3 and set(seen) == {torch.float32}


def test_the_environment_overrides_every_surface(tiny_sam, cpu_bf16, seen, monkeypatch):
    monkeypatch.setenv(dv.PRECISION_ENV, "fp32")
    _surfaces(tiny_sam)
    assert set(seen) == {torch.float32}


def _interior_point(mask: np.ndarray) -> list[int]:
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return [int(v) for v in np.unravel_index(np.argmax(dist), mask.shape)]


def test_default_masks_agree_with_fp32_on_the_demo_test_set(cpu_bf16):
    """Demo model, held-out synthetic scenes of every domain, one click per object (up to 6):
    the default path's masks (bf16 autocast here) against float32 ones."""
    from napari_sam import Predictor, load_model
    from napari_sam.synthetic import DOMAINS, HELDOUT_SEED_START

    model = load_model("demo")
    auto = Predictor(model, device="cpu")
    exact = Predictor(model, device="cpu", precision="fp32")
    assert auto.precision == "bf16"
    inter = union = 0
    ious = []
    for i, (_name, make) in enumerate(sorted(DOMAINS.items())):
        s = make((192, 224), seed=HELDOUT_SEED_START + i)
        auto.set_image(s.image)
        exact.set_image(s.image)
        ids = [v for v in np.unique(s.labels) if v][:6]
        for v in ids:
            pt = [_interior_point(s.labels == v)]
            a = auto.predict(points=pt, labels=[1])
            b = exact.predict(points=pt, labels=[1])
            ma, mb = a[0][int(np.argmax(a[1]))], b[0][int(np.argmax(b[1]))]
            i_, u_ = int((ma & mb).sum()), int((ma | mb).sum())
            inter, union = inter + i_, union + u_
            ious.append(i_ / u_ if u_ else 1.0)
    assert len(ious) >= 20
    print(f"bf16 vs fp32: pooled IoU {inter / union:.4f}, median {np.median(ious):.4f}, "
          f"min {min(ious):.4f} over {len(ious)} clicks")
    assert inter / union >= 0.98
    assert np.median(ious) >= 0.98
