"""Image-encoder speed: our ViT vs Meta's segment-anything, identical weights, same process.

    python benchmarks/bench_encoder.py                      # CPU, ViT-B, 1024 px, batch 1
    python benchmarks/bench_encoder.py --device cuda --batch 8
    python benchmarks/bench_encoder.py --threads 1            # CPU work without thread contention
    python benchmarks/bench_encoder.py --quick                # reference vs the Predictor paths only
    python benchmarks/bench_encoder.py --model vit_t          # MobileSAM's TinyViT, and our vit_b

``--model vit_t`` compares our TinyViT with MobileSAM's own (``pip install --no-deps
mobilesam-mirror``, test-only) and times our ViT-B through the Predictor in the same run.

Also times what a user gets: ``Predictor(model).set_image(image)`` with no precision argument
(``precision="auto"``: bf16 on CPUs with native bf16, see ``napari_sam.device``), and the same
with ``precision="fp32"`` (what a CPU without native bf16 gets), against the reference's fp32.

Prints the median wall-clock and process CPU time of each variant and its speed-up over the
reference fp32 encoder (CPU time is the steadier number on a shared machine),
and the agreement (IoU) of masks decoded from a fixed box prompt with the reduced-precision
embeddings vs the fp32 ones. Random weights are used (rel-pos tables randomised too), so no
download is needed; the numbers do not depend on the weight values.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import cpu_name  # noqa: E402

from _reference import import_segment_anything  # noqa: E402
from napari_sam.models import CONFIGS, build_sam, image_encoder, sam_from_state_dict  # noqa: E402


def build_tiny_pair():
    """MobileSAM's TinyViT encoder with random weights, and our model loaded from its weights."""
    from models.test_tiny_vit import import_mobile_sam, randomize_

    ms = import_mobile_sam()
    torch.manual_seed(0)
    ref = ms.sam_model_registry["vit_t"]()
    randomize_(ref)
    ref.eval()  # after the weights: MobileSAM caches its attention-bias tables in eval()
    ours = sam_from_state_dict(ref.state_dict()).eval()
    return ref.image_encoder, ours


def build_pair(name: str):
    from functools import partial

    if name == "vit_t":
        return build_tiny_pair()

    sa = import_segment_anything()
    m = sa.modeling
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    meta_enc = m.ImageEncoderViT(
        depth=cfg.encoder_depth,
        embed_dim=cfg.encoder_embed_dim,
        img_size=cfg.img_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=cfg.encoder_num_heads,
        patch_size=cfg.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=cfg.encoder_global_attn_indexes,
        window_size=cfg.window_size,
        out_chans=256,
    ).eval()
    with torch.no_grad():
        for n, p in meta_enc.named_parameters():
            if "rel_pos" in n:
                p.normal_(0, 0.3)
            elif p.dim() > 1:
                p.normal_(0, 0.02)
    # our full model with the encoder weights and a random decoder
    ours = build_sam(cfg)
    sd = ours.state_dict()
    sd.update({f"image_encoder.{k}": v for k, v in meta_enc.state_dict().items()})
    ours = sam_from_state_dict(sd).eval()
    return meta_enc, ours


def timeit(fn, warmup: int, runs: int, sync) -> tuple[float, float]:
    """Median wall-clock seconds and median process CPU seconds of ``fn``."""
    for _ in range(warmup):
        fn()
    sync()
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0, b > 0
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


def machine() -> str:
    return f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "vit_t"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--skip-reference", action="store_true", help="only time our encoder")
    ap.add_argument("--int8", action="store_true",
                    help="also int8 dynamic quantization of the encoder's Linear layers "
                         "(CPU, VNNI), alone and with bf16 autocast for the rest")
    ap.add_argument("--quick", action="store_true",
                    help="only the reference and the Predictor paths (default and fp32)")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    low = torch.bfloat16
    meta_enc, ours = build_pair(args.model)
    meta_enc.to(dev)
    ours.to(dev)
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.interpolate(
        torch.rand(args.batch, 3, 16, 16, generator=g), size=1024, mode="bilinear"
    )
    img = (img * 255).round()  # whole intensities: the same input through set_image (uint8)
    x = ours.normalize_and_pad(img.to(dev))
    rgbs = [im.permute(1, 2, 0).to(torch.uint8).numpy() for im in img]
    print(f"# {args.model} encoder, input {tuple(x.shape)}, device {dev}: {machine()}")
    print(f"# load average (1, 5, 15 min) before the run: {os.getloadavg()}", flush=True)

    results: dict[str, tuple[float, float]] = {}
    embs: dict[str, torch.Tensor] = {}

    def run(label, fn):
        with torch.inference_mode():
            embs[label] = fn()
            results[label] = timeit(fn, args.warmup, args.runs, sync)
        wall, cpu = results[label]
        print(f"{label:34s} {wall:8.3f} s wall {cpu:8.3f} s CPU", flush=True)

    if not args.skip_reference:
        run("reference fp32", lambda: meta_enc(x))
    if not args.quick:
        run("ours fp32", lambda: ours.encode(x))

        def ours_autocast():
            with torch.autocast(dev.type, dtype=low):
                return ours.encode(x)

        run("ours bf16 autocast", ours_autocast)
        enc_low = copy.deepcopy(ours.image_encoder).to(low)
        x_low = x.to(low)
        run("ours bf16 weights", lambda: enc_low(x_low))
        if dev.type == "cpu" and args.model != "vit_t":
            image_encoder.CPU_GEMM_ATTENTION = False
            run("ours bf16 weights, SDPA only", lambda: enc_low(x_low))
            image_encoder.CPU_GEMM_ATTENTION = True

    if args.int8 and dev.type == "cpu":
        from torch.ao.quantization import quantize_dynamic

        enc_q = quantize_dynamic(copy.deepcopy(ours.image_encoder), {torch.nn.Linear},
                                 dtype=torch.qint8)
        run("ours int8 dynamic Linear", lambda: enc_q(x))

    # what a user gets: Predictor at its defaults (precision="auto"), through set_image
    # (contrast mapping, resize, normalisation, encoder), and what a CPU without bf16 gets
    from napari_sam import Predictor
    from napari_sam.device import describe

    print(f"# Predictor default on this machine: {describe(dev)}")
    predictor_runs = [("ours default: set_image(image)", ours, "auto"),
                      ("ours set_image, precision=fp32", ours, "fp32")]
    if args.model == "vit_t":  # what the same user gets from ViT-B
        vit_b = build_sam("vit_b").to(dev)
        predictor_runs += [("our vit_b default: set_image", vit_b, "auto"),
                           ("our vit_b set_image, fp32", vit_b, "fp32")]
    for label, model, prec in predictor_runs:
        pred = Predictor(model, device=dev, precision=prec)
        if args.batch == 1:
            time_fn = lambda p=pred: p.set_image(rgbs[0])  # noqa: E731
        else:
            time_fn = lambda p=pred: p.encode_rgb(rgbs)  # noqa: E731
        with torch.inference_mode():
            time_fn()
            results[label] = timeit(time_fn, args.warmup, args.runs, sync)
            embs[label] = torch.stack([e.features for e in pred.encode_rgb(rgbs)])
        wall, cpu = results[label]
        print(f"{label:34s} {wall:8.3f} s wall {cpu:8.3f} s CPU   ({pred.precision})", flush=True)

    ref = results.get("reference fp32")
    if ref:
        print()
        for label, (wall, cpu) in results.items():
            print(f"speed-up {label:34s} x{ref[0] / wall:5.2f} wall  x{ref[1] / cpu:5.2f} CPU time")
        print(f"load average (1 min) after the run: {os.getloadavg()[0]:.2f}")
        if "our vit_b default: set_image" in results:
            for ours_label, b_label in (("ours default: set_image(image)",
                                         "our vit_b default: set_image"),
                                        ("ours set_image, precision=fp32",
                                         "our vit_b set_image, fp32")):
                (w_t, c_t), (w_b, c_b) = results[ours_label], results[b_label]
                print(f"vit_t vs our vit_b, {ours_label:31s} x{w_b / w_t:5.2f} wall "
                      f"x{c_b / c_t:5.2f} CPU time")
        fp32 = embs.get("ours fp32", embs["ours set_image, precision=fp32"])
        err = (fp32 - embs["reference fp32"]).abs().max().item()
        print(f"max |embedding difference| ours fp32 vs reference: {err:.2e}")

    # masks from a fixed box prompt: reduced precision vs fp32 embeddings
    box = torch.tensor([[300.0, 250.0, 700.0, 800.0]], device=dev)
    with torch.inference_mode():
        exact = "ours fp32" if "ours fp32" in embs else "ours set_image, precision=fp32"
        ref_logits, _ = ours.decode(embs[exact][:1].float(), boxes=box)
        for label in results:
            if label.startswith("ours") and label != exact and "vit_b" not in label:
                logits, _ = ours.decode(embs[label][:1].float(), boxes=box)
                print(f"mask IoU {label} vs fp32: {mask_iou(logits, ref_logits):.4f}")
    print(f"threads={torch.get_num_threads()} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")


if __name__ == "__main__":
    main()
