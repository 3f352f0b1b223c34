"""CUDA: the same results on a GPU as on the CPU, and training runs there.

These run only where CUDA is available (a lent GPU, see docs/benchmarks.md); CI has none and
prints the skip reason.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here: GPU tests run on a lent GPU only"
)


def _masky_model(seed: int = 0):
    """A tiny random model whose masks pass SAM's filters."""
    from _mask_weights import make_masks_survive_
    from napari_sam.models import SamConfig, build_sam
    from tiny_configs import TINY_VIT

    torch.manual_seed(seed)
    return make_masks_survive_(build_sam(SamConfig(**{**TINY_VIT, "decoder_depth": 2})).eval())


def _image(h=150, w=200, seed=5):
    from _mask_weights import blob_image

    return blob_image(h, w, seed)


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_predictor_on_cuda_matches_cpu():
    from napari_sam import Predictor

    img = _image()
    pts, lab = np.array([[40.0, 60.0], [100.0, 150.0]]), np.array([1, 1])
    out = {}
    for dev in ("cpu", "cuda"):
        model = _masky_model()
        p = Predictor(model, device=dev, precision="fp32")
        emb = p.set_image(img)
        assert emb.features.device.type == dev
        out[dev] = [p.predict(points=pts[i : i + 1], labels=lab[i : i + 1], multimask=False)
                    for i in range(2)]
    for (cm, cs, cl), (gm, gs, gl) in zip(out["cpu"], out["cuda"]):
        assert cm.any() and _iou(cm, gm) > 0.99
        np.testing.assert_allclose(cs, gs, atol=2e-2)
        assert np.abs(cl - gl).max() < 0.05 * np.abs(cl).max()


@pytest.mark.parametrize("grid", ["fp32", "tf32"])
def test_segment_everything_on_cuda_gives_the_cpu_masks(grid, monkeypatch):
    """Exact float32 on the GPU, and the reduced GridDecoder precisions that
    ``precision="auto"`` may pick there (``GRID_PRECISION_CUDA``), give the CPU's masks."""
    from scipy.optimize import linear_sum_assignment

    from napari_sam import automatic
    from napari_sam.automatic import segment_everything

    if grid != "fp32":
        monkeypatch.setattr(automatic.grid_decoder, "GRID_PRECISION_CUDA", grid)

    img = _image()
    # no NMS: every mask that passes the filters is compared
    kw = dict(points_per_side=16, pred_iou_thresh=0.5, stability_score_thresh=0.7,
              box_nms_thresh=1.0)
    if grid == "fp32":
        res = {"cpu": segment_everything(img, _masky_model(), device="cpu", **kw),
               "cuda": segment_everything(img, _masky_model(), device="cuda", precision="fp32",
                                          **kw)}
    else:  # one float32 embedding for both, so that only the decoder's arithmetic differs
        from napari_sam.predictor import Predictor
        from napari_sam.preprocess import to_uint8_rgb

        model = _masky_model()
        emb = Predictor(model, device="cpu", precision="fp32").encode_rgb([to_uint8_rgb(img)])[0]
        res = {"cpu": segment_everything(emb, model, device="cpu", **kw),
               "cuda": segment_everything(emb, model, device="cuda", precision="auto",
                                          **kw)}
        assert automatic.grid_precision(torch.device("cuda"), torch.bfloat16) == grid
    masks = {k: np.stack([r.mask(img.shape[:2]) for r in v.records + v.hidden]).reshape(
        len(v.records + v.hidden), -1).astype(np.float32) for k, v in res.items()}
    a, b = masks["cpu"], masks["cuda"]
    assert len(a) > 50
    assert abs(len(a) - len(b)) <= 0.02 * len(a)
    inter = a @ b.T
    iou = inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None] - inter, 1)
    ri, ci = linear_sum_assignment(-iou)
    assert (iou[ri, ci] >= 0.99).sum() >= 0.95 * len(a)


def test_segment_volume_on_cuda_gives_the_cpu_labels():
    from napari_sam.embeddings import embed
    from napari_sam.volume import SlicePrompt, segment_volume

    vol = np.stack([_image(seed=5)[..., 0]] * 6)
    prompts = {1: SlicePrompt(2, points=[(40.0, 60.0)]), 2: SlicePrompt(3, points=[(100.0, 150.0)])}
    res = {}
    for dev in ("cpu", "cuda"):
        emb = embed(vol, _masky_model(), device=dev, precision="fp32", compute=True)
        res[dev] = segment_volume(emb, prompts).labels
    assert res["cpu"].any()
    assert (res["cpu"] == res["cuda"]).mean() > 0.99


def test_demo_training_runs_on_cuda_with_scene_workers(tmp_path):
    """The GPU path of the demo command: model, evaluation and the propagation score on the
    device, scenes made by worker processes; the checkpoint reloads on the CPU."""
    import napari_sam as ns
    from napari_sam.training import demo

    out = tmp_path / "demo.pt"
    rc = demo.main([
        "--out", str(out), "--minutes", "0.3", "--eval-minutes", "10", "--pool-size", "8",
        "--batch-size", "8", "--objects-per-image", "2", "--warm", "0.2", "--no-progress",
        "--val-volumes", "1", "--device", "cuda", "--workers", "2",
    ])
    assert rc == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["device"].startswith("cuda") and meta["final"] is True
    assert meta["steps"] >= 1  # (a busy GPU machine may manage only a few in 0.3 min)
    assert meta["data"]["images_generated"] > 8  # the workers delivered new scenes
    last = meta["metrics"][-1]
    assert 0.0 <= last["nuclei_3d_iou"] <= 1.0 and 0.0 <= last["nuclei_point_iou"] <= 1.0
    model = ns.load_model(out, device="cpu")
    assert next(model.parameters()).device.type == "cpu"


def test_trainer_step_on_cuda_learns_one_image():
    from napari_sam import synthetic as syn
    from napari_sam.models import SamConfig, build_sam
    from napari_sam.training.data import prepare_item
    from napari_sam.training.trainer import TrainConfig, Trainer
    from tiny_configs import TINY_VIT

    torch.manual_seed(0)
    model = build_sam(SamConfig(**TINY_VIT))
    s = syn.nuclei_2d((128, 128), seed=3)
    item = prepare_item(s.image, s.labels, model.img_size, name="n")
    tr = Trainer(model, TrainConfig(lr=2e-3, batch_size=1, n_corrections=1, augment=False,
                                    precision="bf16"), device="cuda", seed=0)
    assert next(tr.model.parameters()).device.type == "cuda"
    losses = [tr.train_step([item])["loss"] for _ in range(60)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_training_prompts_on_cuda_equal_the_cpu_ones():
    """The trainer draws prompts on its device: the same depths and boxes as on the CPU, and
    clicks that land where they must."""
    from napari_sam.training.prompts import (
        boxes_of_masks_torch,
        correction_clicks_torch,
        interior_depth,
        sample_points_torch,
    )

    yy, xx = np.mgrid[:96, :96]
    gt = torch.from_numpy(np.stack([(yy - 30) ** 2 + (xx - 40) ** 2 <= r * r
                                    for r in (4, 9, 15, 30)]))
    pred = torch.roll(gt, 5, 2)
    gt_c, pred_c = gt.cuda(), pred.cuda()
    assert torch.equal(interior_depth(gt_c).cpu(), interior_depth(gt))
    assert torch.equal(boxes_of_masks_torch(gt_c).cpu(), boxes_of_masks_torch(gt))
    gen = torch.Generator(device="cuda").manual_seed(0)
    pts = sample_points_torch(gt_c, gen, interior_bias=0.5)[:, 0].long().cpu()
    assert gt[torch.arange(4), pts[:, 1], pts[:, 0]].all()
    xy, lab = correction_clicks_torch(pred_c, gt_c, gen, p_farthest=0.5)
    xy, lab = xy.long().cpu(), lab.cpu()
    err = (gt ^ pred)[torch.arange(4), xy[:, 1], xy[:, 0]]
    assert err.all() and torch.equal(gt[torch.arange(4), xy[:, 1], xy[:, 0]], lab == 1)


def test_grid_decoder_fused_head_on_cuda_equals_pytorch():
    """The Triton kernel of the upscaling head (the default on CUDA where Triton is installed)
    gives the logits of the PyTorch ops, at float32 and at TF32."""
    from napari_sam.automatic import GridDecoder
    from napari_sam.kernels import triton_available

    if not triton_available():
        pytest.skip("Triton is not installed with this PyTorch: the fused head is not used")
    sam = _masky_model().cuda()
    e = sam.embedding_size
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(256, e, e, generator=g).cuda()
    pts = (torch.rand(200, 2, generator=g) * sam.img_size).cuda()
    idx = torch.arange(0, 200, 3, device="cuda")
    for precision in ("fp32", "tf32"):
        out = {}
        for fused in (True, False):
            dec = GridDecoder(sam, precision=precision, fused_head=fused)
            assert dec._use_fused_head(torch.device("cuda")) is fused
            shared = dec.prepare(feats)
            out[fused] = dec.masks(shared, dec.tokens(shared, pts), idx)
        scale = out[False].abs().max().item()
        tol = 1e-4 if precision == "fp32" else 2e-3
        assert (out[True] - out[False]).abs().max().item() < tol * scale
