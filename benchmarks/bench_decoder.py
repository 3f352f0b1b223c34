"""Click-to-mask latency: our PyTorch decoder, our ONNX decoder in onnxruntime, Meta's
``SamPredictor.predict``, in one run on identical random ViT-B weights.

    python benchmarks/bench_decoder.py                 # 512 px image, one point, 3 masks
    python benchmarks/bench_decoder.py --threads 1
    python benchmarks/bench_decoder.py --encoder       # also export the full ViT-B encoder

A click is: napari (row, col) point -> model frame -> prompt encoder + mask decoder ->
upsampled boolean masks at the image size (the embedding is computed once, before timing).
Variants:

* ``ours torch fp32``: ``Predictor(precision="fp32").predict(points, labels)``;
* ``ours torch auto``: the same with ``precision="auto"`` (bf16 on CPUs with native bf16);
* ``ours onnxruntime``: our exported decoder (``napari_sam.export_onnx``), one
  ``session.run`` plus the thresholding; it returns Meta's four masks (single-mask token and
  the three multimask ones), all upsampled;
* ``Meta SamPredictor``: ``SamPredictor.predict(point_coords, point_labels)``.

Prints the median wall-clock and process CPU time per click (CPU time is the steadier
number on a shared machine), the load average, and the agreement of the masks with
``ours torch fp32``. ``--encoder`` also exports the full-depth ViT-B image encoder and
compares its output in onnxruntime with the PyTorch encoder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import cpu_name  # noqa: E402

from _reference import import_segment_anything  # noqa: E402
from napari_sam.models import CONFIGS, build_sam  # noqa: E402


def _meta_sam(ours, with_encoder: bool):
    """Meta's Sam with our weights (ViT-B config)."""
    from functools import partial

    sa = import_segment_anything()
    m = sa.modeling
    cfg = ours.config
    e = ours.embedding_size
    enc = m.ImageEncoderViT(
        depth=cfg.encoder_depth, embed_dim=cfg.encoder_embed_dim, img_size=cfg.img_size,
        mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=cfg.encoder_num_heads, patch_size=cfg.patch_size, qkv_bias=True,
        use_rel_pos=True, global_attn_indexes=cfg.encoder_global_attn_indexes,
        window_size=cfg.window_size, out_chans=256,
    )  # fmt: skip
    meta = m.Sam(
        image_encoder=enc,
        prompt_encoder=m.PromptEncoder(
            embed_dim=256, image_embedding_size=(e, e),
            input_image_size=(cfg.img_size, cfg.img_size), mask_in_chans=16,
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                            num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
    ).eval()  # fmt: skip
    meta.load_state_dict(ours.state_dict())
    return meta, sa


def _time(fn, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Median wall and process-CPU milliseconds per call."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return 1e3 * statistics.median(walls), 1e3 * statistics.median(cpus)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads")
    ap.add_argument("--encoder", action="store_true",
                    help="also export the full ViT-B encoder and compare it")  # fmt: skip
    args = ap.parse_args(argv)
    import onnxruntime as ort

    import napari_sam as ns
    from napari_sam.predictor import ImageEmbedding
    from napari_sam.preprocess import ResizeSpec, points_to_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_sam(CONFIGS["vit_b"]).eval()
    with torch.no_grad():  # biases and norms away from 0 / 1, as in the reference tests
        g = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    e = model.embedding_size
    size = (args.size, args.size)
    spec = ResizeSpec.for_image(size, model.img_size)
    features = torch.randn(256, e, e, generator=torch.Generator().manual_seed(1))
    point_rc = np.array([[0.4 * size[0], 0.55 * size[1]]])

    # ours, PyTorch
    preds = {}
    for precision in ("fp32", "auto"):
        pred = ns.Predictor(model, device="cpu", precision=precision)
        pred.set_embedding(ImageEmbedding(features, size, spec.input_size, model.model_id))
        preds[precision] = pred

    # ours, ONNX in onnxruntime
    tmp = Path(tempfile.mkdtemp(prefix="bench-decoder-"))
    t0 = time.perf_counter()
    result = ns.export_onnx(model, tmp / "vit_b", encoder=False)
    export_s = time.perf_counter() - t0
    opts = ort.SessionOptions()
    if args.threads:
        opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(result.decoder), opts, providers=["CPUExecutionProvider"])
    emb_np = features[None].numpy()
    zeros = np.zeros((1, 1, 4 * e, 4 * e), np.float32)

    def onnx_click():
        xy = points_to_model(point_rc, spec)
        feed = {
            "image_embeddings": emb_np,
            "point_coords": np.concatenate([xy, [[0.0, 0.0]]])[None].astype(np.float32),
            "point_labels": np.array([[1.0, -1.0]], np.float32),
            "mask_input": zeros,
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array(size, np.float32),
        }
        masks, iou, _ = sess.run(None, feed)
        return masks[0, 1:] > 0, iou[0, 1:]

    # Meta
    meta, sa = _meta_sam(model, with_encoder=True)
    meta_pred = sa.SamPredictor(meta)
    meta_pred.reset_image()
    meta_pred.original_size = size
    meta_pred.input_size = spec.input_size
    meta_pred.features = features[None]
    meta_pred.is_image_set = True
    xy_meta = np.array([[point_rc[0, 1], point_rc[0, 0]]])  # Meta takes (x, y) original pixels

    variants = {
        "ours torch fp32": lambda: preds["fp32"].predict(points=point_rc, labels=[1])[:2],
        f"ours torch auto ({preds['auto'].precision})": lambda: preds["auto"].predict(
            points=point_rc, labels=[1]
        )[:2],
        "ours onnxruntime": onnx_click,
        "Meta SamPredictor": lambda: meta_pred.predict(xy_meta, np.array([1]))[:2],
    }
    ref_masks, ref_iou = variants["ours torch fp32"]()
    load = os.getloadavg()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {ort.__version__}")  # fmt: skip
    print(f"ViT-B decoder (random weights), {size[0]}x{size[1]} image, one point, "
          f"3 masks; ONNX export {export_s:.1f} s")  # fmt: skip
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'variant':28s} {'wall ms':>8s} {'cpu ms':>8s} {'vs Meta':>8s} {'mask agree':>10s}")
    rows = {}
    for name, fn in variants.items():
        with torch.inference_mode():
            rows[name] = _time(fn, args.repeats)
    meta_wall = rows["Meta SamPredictor"][0]
    for name, fn in variants.items():
        masks, _ = fn()
        agree = float((np.asarray(masks) == ref_masks).mean())
        wall, cpu = rows[name]
        print(f"{name:28s} {wall:8.1f} {cpu:8.1f} {meta_wall / wall:7.2f}x {agree:10.5f}")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    if args.encoder:
        t0 = time.perf_counter()
        enc = ns.export_onnx(model, tmp / "vit_b_encoder", decoder=False)
        export_s = time.perf_counter() - t0
        esess = ort.InferenceSession(str(enc.encoder), opts, providers=["CPUExecutionProvider"])
        x = model.normalize_and_pad(torch.rand(1, 3, *spec.input_size) * 255)
        t0 = time.perf_counter()
        (got,) = esess.run(None, {"image": x.numpy()})
        ort_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.inference_mode():
            want = model.encode(x).numpy()
        torch_s = time.perf_counter() - t0
        with torch.inference_mode():
            meta_emb = meta.image_encoder(x).numpy()
        scale = float(np.abs(want).max())
        print(f"ViT-B encoder (12 blocks, 1024 px): export {export_s:.1f} s, "
              f"{enc.encoder.stat().st_size / 1e6:.0f} MB; one image: onnxruntime {ort_s:.1f} s, "
              f"torch fp32 {torch_s:.1f} s; max |ort - torch| / max|torch| = "
              f"{np.abs(got - want).max() / scale:.2e}, vs Meta "
              f"{np.abs(got - meta_emb).max() / scale:.2e}")  # fmt: skip
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
