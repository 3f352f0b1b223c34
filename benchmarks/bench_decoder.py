"""Click-to-mask latency: our PyTorch decoder (cached and plain), our ONNX decoder in
onnxruntime, Meta's ``SamPredictor.predict``, in one run on identical random ViT-B weights.

    python benchmarks/bench_decoder.py                 # 512 px image, one point, 3 masks
    python benchmarks/bench_decoder.py --threads 1
    python benchmarks/bench_decoder.py --encoder       # also export the full ViT-B encoder

A click is: napari (row, col) point -> model frame -> prompt encoder + mask decoder ->
upsampled boolean masks at the image size (the embedding is computed once, before timing).
Variants:

* ``ours default``: ``Predictor(model).predict(points, labels)`` at the Predictor's
  defaults: precision "auto" and the cached click decoder
  (:class:`napari_sam.models.cached_decoder.CachedDecoder`; its upscaling head in bfloat16
  where "auto" means bf16 on this CPU, float32 elsewhere; its per-image cache is made during
  the warm-up and timed separately as ``cache per image``);
* ``ours fp32``: the same with ``precision="fp32"``;
* ``ours plain auto`` / ``ours plain fp32``: ``cached_decoder=False``, the decoder of
  ``models/mask_decoder.py`` at that precision (what every click ran before #27);
* ``ours onnxruntime``: our exported decoder (``napari_sam.export_onnx``), one
  ``session.run`` plus the thresholding; it returns Meta's four masks (single-mask token and
  the three multimask ones), all upsampled;
* ``Meta SamPredictor``: ``SamPredictor.predict(point_coords, point_labels)``.

Threads: as the GUI and the CLI set them (:func:`napari_sam.device.configure_threads`: the
free cores at the current load, ``OMP_WAIT_POLICY=PASSIVE``) unless ``--threads`` is given;
onnxruntime gets the same number. Prints the median and best wall-clock and the median
process CPU time per click (CPU time is the steadier number on a shared machine), the load
average before and after, ratios against Meta and against our plain decoder, and the
agreement of the masks with ``ours plain fp32``. ``--encoder`` also exports the full-depth
ViT-B image encoder and compares its output in onnxruntime with the PyTorch encoder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _threads_from_argv(argv) -> None:
    """Thread settings before torch is imported: ``--threads N`` or the GUI's policy."""
    argv = sys.argv[1:] if argv is None else argv
    if "--threads" in argv:
        os.environ["OMP_NUM_THREADS"] = argv[argv.index("--threads") + 1]
    from napari_sam.device import configure_threads

    configure_threads()


if __name__ == "__main__":
    _threads_from_argv(None)

import numpy as np  # noqa: E402
import torch  # noqa: E402
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


def _time(variants: dict, repeats: int, rounds: int = 5) -> dict:
    """Per variant: median wall, best wall and median process-CPU milliseconds per call.

    The variants take turns (``rounds`` rounds of ``repeats / rounds`` calls each, after
    three warm-up calls each), so a change of the machine's load hits them alike.
    """
    walls = {k: [] for k in variants}
    cpus = {k: [] for k in variants}
    with torch.inference_mode():
        for fn in variants.values():
            for _ in range(3):
                fn()
        for _ in range(rounds):
            for name, fn in variants.items():
                for _ in range(max(1, repeats // rounds)):
                    c0, t0 = time.process_time(), time.perf_counter()
                    fn()
                    walls[name].append(time.perf_counter() - t0)
                    cpus[name].append(time.process_time() - c0)
    return {
        k: (1e3 * statistics.median(walls[k]), 1e3 * min(walls[k]), 1e3 * statistics.median(cpus[k]))
        for k in variants
    }


def _vit_b():
    """ViT-B with random weights, biases away from 0 (as in the reference tests)."""
    torch.manual_seed(0)
    model = build_sam(CONFIGS["vit_b"]).eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def _onnx_click(ort, sess, features, point_rc, spec, size):
    """One click through our exported decoder: -> (3 masks, 3 IoU) like ``predict``."""
    from napari_sam.preprocess import points_to_model

    emb_np = features[None].numpy()
    e = features.shape[-1]
    zeros = np.zeros((1, 1, 4 * e, 4 * e), np.float32)

    def click():
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

    return click


def _meta_click(meta, sa, features, point_rc, spec, size):
    meta_pred = sa.SamPredictor(meta)
    meta_pred.reset_image()
    meta_pred.original_size = size
    meta_pred.input_size = spec.input_size
    meta_pred.features = features[None]
    meta_pred.is_image_set = True
    xy_meta = np.array([[point_rc[0, 1], point_rc[0, 0]]])  # Meta takes (x, y) original pixels
    return lambda: meta_pred.predict(xy_meta, np.array([1]))[:2]


def _report(variants, rows, load0, cache_ms):
    ref_masks, _ = variants["ours plain fp32"]()
    meta_wall = rows["Meta SamPredictor"][0]
    plain_wall = rows["ours plain auto"][0]
    print(f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    print(f"cache per image (CachedDecoder.prepare, once per embedding): wall {cache_ms[0]:.1f} "
          f"ms, cpu {cache_ms[1]:.1f} ms")  # fmt: skip
    print(f"{'variant':24s} {'wall ms':>8s} {'best ms':>8s} {'cpu ms':>8s} {'x Meta':>7s} "
          f"{'x plain':>7s} {'mask agree':>10s}")  # fmt: skip
    for name, fn in variants.items():
        with torch.inference_mode():
            masks, _ = fn()
        agree = float((np.asarray(masks) == ref_masks).mean())
        wall, best, cpu = rows[name]
        print(f"{name:24s} {wall:8.1f} {best:8.1f} {cpu:8.1f} {meta_wall / wall:6.2f}x "
              f"{plain_wall / wall:6.2f}x {agree:10.5f}")  # fmt: skip
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def _profile(model, pred, emb, point_rc, repeats: int) -> None:
    """Where a default click's time goes: CPU ms per stage and torch.profiler's top ops."""
    from torch.profiler import ProfilerActivity, profile

    from napari_sam.models.cached_decoder import CachedDecoder, click_precision
    from napari_sam.prompts import prompt_tensors

    dec = CachedDecoder(model, precision=click_precision(pred.device, pred.dtype))
    cache = dec.prepare(emb.features)
    pt, bx, _, _ = prompt_tensors(point_rc[None], [[1]], None, None, emb.spec(model.img_size),
                                  torch.device("cpu"))  # fmt: skip
    with torch.inference_mode():
        sparse, _ = model.prompt_encoder(points=pt, boxes=None, masks=None)
        hyper, _, state = dec.tokens(cache, sparse, True)
        logits = dec.masks(cache, state, hyper)
    stages = {
        "prompt encoder": lambda: model.prompt_encoder(points=pt, boxes=None, masks=None),
        "two-way transformer + heads": lambda: dec.tokens(cache, sparse, True),
        "upscaling head (3 masks)": lambda: dec.masks(cache, state, hyper),
        "upsample to 512 + threshold": lambda: pred.upsample(logits, emb),
        "whole predict()": lambda: pred.predict(points=point_rc, labels=[1]),
    }
    rows = _time(stages, repeats)
    print("stages of one default click (median cpu ms / median wall ms):")
    for name, (wall, _, cpu) in rows.items():
        print(f"  {name:30s} {cpu:7.2f} {wall:7.2f}")
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(10):
            pred.predict(points=point_rc, labels=[1])
    ka = prof.key_averages()
    gflop = sum(k.flops for k in ka) / 10 / 1e9
    print(f"torch.profiler, 10 clicks: {gflop:.3f} GFLOP per click counted by the profiler "
          "(matrix products; 2 per multiply-add)")
    print(ka.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=28))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch and onnxruntime threads (default: the GUI's policy)")
    ap.add_argument("--encoder", action="store_true",
                    help="also export the full ViT-B encoder and compare it")
    ap.add_argument("--profile", action="store_true",
                    help="also time the stages of a default click and print torch.profiler's "
                         "top operators")  # fmt: skip
    args = ap.parse_args(argv)
    import onnxruntime as ort

    import napari_sam as ns
    from napari_sam.models.cached_decoder import CachedDecoder, click_precision
    from napari_sam.predictor import ImageEmbedding
    from napari_sam.preprocess import ResizeSpec

    if args.threads:
        torch.set_num_threads(args.threads)
    model = _vit_b()
    e = model.embedding_size
    size = (args.size, args.size)
    spec = ResizeSpec.for_image(size, model.img_size)
    features = torch.randn(256, e, e, generator=torch.Generator().manual_seed(1))
    emb = ImageEmbedding(features, size, spec.input_size, model.model_id)
    point_rc = np.array([[0.4 * size[0], 0.55 * size[1]]])

    variants, preds = {}, {}
    for label, kw in (("ours default", {}), ("ours fp32", {"precision": "fp32"}),
                      ("ours plain auto", {"cached_decoder": False}),
                      ("ours plain fp32", {"precision": "fp32", "cached_decoder": False})):
        pred = ns.Predictor(model, device="cpu", **kw)
        pred.set_embedding(emb)
        preds[label] = pred
        if label == "ours default":
            label = f"ours default ({pred.precision})"
        variants[label] = lambda p=pred: p.predict(points=point_rc, labels=[1])[:2]

    tmp = Path(tempfile.mkdtemp(prefix="bench-decoder-"))
    t0 = time.perf_counter()
    result = ns.export_onnx(model, tmp / "vit_b", encoder=False)
    export_s = time.perf_counter() - t0
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(result.decoder), opts, providers=["CPUExecutionProvider"])
    variants["ours onnxruntime"] = _onnx_click(ort, sess, features, point_rc, spec, size)
    meta, sa = _meta_sam(model, with_encoder=True)
    variants["Meta SamPredictor"] = _meta_click(meta, sa, features, point_rc, spec, size)

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}), onnxruntime {ort.__version__}")
    print(f"ViT-B decoder (random weights), {size[0]}x{size[1]} image, one point, "
          f"3 masks; ONNX export {export_s:.1f} s")  # fmt: skip
    load0 = os.getloadavg()
    default = preds["ours default"]
    dec = CachedDecoder(model, precision=click_precision(default.device, default.dtype))
    dec.prepare(features)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(3):
        dec.prepare(features)
    cache_ms = (1e3 * (time.perf_counter() - t0) / 3, 1e3 * (time.process_time() - c0) / 3)
    rows = _time(variants, args.repeats)
    _report(variants, rows, load0, cache_ms)
    if args.profile:
        _profile(model, preds["ours default"], emb, point_rc, args.repeats)

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
