"""Click to mask on an embedded image: ours vs Meta's ``SamPredictor.predict``, same process.

    python benchmarks/bench_click.py                 # ViT-B (random weights) and the demo model
    python benchmarks/bench_click.py --threads 1 --repeats 50

For one positive click on an image whose embedding is already computed (512 x 512 and
1024 x 1024 pixels) it times, median and best of ``--repeats`` after a warm-up:

- ``decode+upsample``: ``Predictor.predict_batch`` (prompt encoder, mask decoder, 3 candidate
  masks upsampled to the image and thresholded; tensors, no validation), target <= 10 ms;
- ``predict``: ``Predictor.predict`` as a script calls it (validation, numpy out);
- Meta's ``SamPredictor.predict`` (multimask, same weights, same embedding) for ViT-B, the
  reference the ratio is printed against.

Ours at its defaults (``precision="auto"``: bf16 on CPUs with native bf16; one prompt without
a mask input runs the cached click decoder in float32, its per-image cache made during the
warm-up), at fp32, and both with ``cached_decoder=False`` ("plain": the decoder every click ran
before #27). Random weights: the time does not depend on their values. The load average is
printed. ``benchmarks/bench_decoder.py`` compares the same click with our ONNX decoder too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

if __name__ == "__main__":  # threads as the GUI and CLI set them, before torch loads
    from napari_sam.device import configure_threads

    if "--threads" in sys.argv and sys.argv[sys.argv.index("--threads") + 1] != "0":
        os.environ["OMP_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]
    configure_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import cpu_name  # noqa: E402


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median and best milliseconds of ``fn`` (after two warm-up calls)."""
    fn()
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts), 1e3 * min(ts)


def _meta_predictor(ours):
    """Meta's SamPredictor with our model's weights (ViT models only)."""
    from _reference import import_segment_anything
    from models.test_reference import build_meta_sam

    sa = import_segment_anything()
    meta = build_meta_sam(ours.config)
    meta.load_state_dict(ours.state_dict(), strict=False)
    return sa.SamPredictor(meta.eval())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: the GUI's policy, napari_sam.device.configure_threads)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--models", default="vit_b,demo")
    ap.add_argument("--sizes", default="512,1024")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    import napari_sam as ns
    from napari_sam.device import describe
    from napari_sam.models import CONFIGS, build_sam
    from napari_sam.predictor import ImageEmbedding

    print(f"# {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"default: {describe('cpu')}; load {os.getloadavg()[0]:.2f}")
    print(f"{'model':6s} {'size':>5s} {'what':40s} {'median ms':>9s} {'best ms':>8s} "
          f"{'x Meta':>7s}")
    for name in a.models.split(","):
        torch.manual_seed(0)
        if name == "demo":
            model = ns.load_model("demo")
        else:
            model = build_sam(CONFIGS[name])
        model.eval()
        e = int(model.embedding_size)
        feats = torch.randn(256, e, e, generator=torch.Generator().manual_seed(1))
        meta = _meta_predictor(model) if name != "demo" else None
        for size in (int(s) for s in a.sizes.split(",")):
            emb = ImageEmbedding(feats, (size, size), (model.img_size,) * 2, model.model_id)
            rc = [size // 3, size // 2]
            ref = None
            if meta is not None:
                meta.reset_image()
                meta.features = feats[None]
                meta.original_size = (size, size)
                meta.input_size = (model.img_size, model.img_size)
                meta.is_image_set = True
                xy = np.array([[rc[1], rc[0]]])
                with torch.inference_mode():
                    ref = _time(lambda m=meta, q=xy: m.predict(q, np.array([1])), a.repeats)
                print(f"{name:6s} {size:5d} {'Meta SamPredictor.predict (fp32)':40s} "
                      f"{ref[0]:9.1f} {ref[1]:8.1f} {1.0:7.2f}", flush=True)
            for prec, cached in (("auto", True), ("fp32", True), ("auto", False),
                                 ("fp32", False)):
                pred = ns.Predictor(model, device="cpu", precision=prec, cached_decoder=cached)
                pred.set_embedding(emb)
                rows = (
                    ("decode+upsample", lambda p=pred, q=rc: p.predict_batch(
                        points=[[q]], labels=[[1]])),
                    ("predict", lambda p=pred, q=rc: p.predict(points=[q], labels=[1])),
                )
                for what, fn in rows:
                    med, best = _time(fn, a.repeats)
                    label = (f"ours {'' if cached else 'plain '}{pred.precision}"
                             f"{' (default)' if prec == 'auto' and cached else ''} {what}")
                    ratio = f"{ref[0] / med:7.2f}" if ref else ""
                    print(f"{name:6s} {size:5d} {label:40s} {med:9.1f} {best:8.1f} {ratio}",
                          flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
