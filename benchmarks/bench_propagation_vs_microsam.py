"""Propagation side by side: ``segment_volume`` against micro-sam's ``segment_mask_in_volume``.

    python benchmarks/bench_propagation_vs_microsam.py                 # real stack + synthetic
    python benchmarks/bench_propagation_vs_microsam.py --no-synthetic --no-grid

Both run on the same model (the bundled demo model: Meta's ``PromptEncoder`` / ``MaskDecoder``
holding exactly its weights for micro-sam, loaded strictly), the same embeddings (ours, computed
once per stack and handed to micro-sam as its precomputed ``features``) and the same seeds: one
click per nucleus on the middle slice of its z-range at its deepest pixel, turned into the seed
mask that ``segment_volume`` decodes on that slice (best of three candidates), which is also
micro-sam's initial segmentation; and the ground-truth mask on that slice ("mask seed"). micro-sam
propagates one object at a time, so ours is shown both one object at a time ("alone") and with all
objects at once (its default use, "all").

Stacks: the real development stack ``../shared/data/real-nuclei-3d`` (skipped with a reason where
missing) and ``nuclei_3d`` seeds 10000 / 10001 / 10003 (the #3 test volumes). Per configuration:
mean 3D IoU over the ground-truth objects, worst leak (fraction of an object's predicted pixels on
other ground-truth objects), mean overshoot and undershoot in slices (predicted slices outside the
object's z-range, and z-range slices without prediction), and wall time per object.

micro-sam (PyPI ``micro-sam``, a benchmark-only dependency; install with ``pip install --no-deps
micro-sam bioimage-cpp`` so it leaves torch alone) is imported as it is. Its modules import, at
module level, packages its propagation path never calls; those are stubbed here when missing, and
the run prints which: ``elf`` (parallel, io, segmentation, tracking, wrappers), ``torch_em``
(UNETR, watershed), ``torchvision`` (``batched_nms``, ``box_area``), ``napari``/``trackastra``
(optional already). A stub raises if it is ever called. ``bioimage_cpp`` (its distance transform
and Gaussian smoothing derive the point prompts) is the real package. One adaptation: micro-sam
builds its mask prompt for SAM's 256 x 256 low-resolution grid (1024-pixel input), the demo model
has a 256-pixel input and a 128 x 128 grid, so the predictor given to micro-sam area-averages the
mask prompt by 2 (the same geometry; done by a ``SamPredictor`` subclass, nothing else changed).

micro-sam configurations: its annotator defaults (``projection="single_point"``,
``iou_threshold=0.5``, ``box_extension=0.05``), its evaluation defaults (``"mask"``, 0.8, 0.025)
and, unless ``--no-grid``, a grid over projection (all five) x iou_threshold (0.5, 0.8) x
box_extension (0, 0.05) for the click seeds on the real stack, whose best is reported as
"micro-sam best of grid" (chosen on the stack it is scored on: an upper bound for micro-sam).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]
REAL = ROOT.parent / "shared" / "data" / "real-nuclei-3d"

STUBBED: list[str] = []
_STUB_ROOTS = ("elf", "torch_em", "torchvision")


class _Stub(types.ModuleType):
    """A module whose every attribute is a submodule-or-callable that raises when called."""

    __path__: list[str] = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def never(*args, **kwargs):
            raise RuntimeError(f"stub {self.__name__}.{name} called: micro-sam's propagation "
                               "path was expected never to call it")

        return never


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        root = fullname.split(".")[0]
        if root not in _STUB_ROOTS:
            return None
        for finder in sys.meta_path:  # the real package wins where it is installed
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            if finder.find_spec(root, None) is not None:
                return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        STUBBED.append(spec.name)
        return _Stub(spec.name)

    def exec_module(self, module):
        pass


def import_microsam():
    sys.meta_path.insert(0, _StubFinder())
    mds = importlib.import_module("micro_sam.multi_dimensional_segmentation")
    return mds


def meta_twin(ours):
    """Meta's Sam with our prompt encoder and mask decoder weights (strict load)."""
    from segment_anything import modeling as m

    cfg, e = ours.config, ours.embedding_size

    class NoEncoder(torch.nn.Module):
        def __init__(self, img_size):
            super().__init__()
            self.img_size = img_size

    meta = m.Sam(
        image_encoder=NoEncoder(cfg.img_size),
        prompt_encoder=m.PromptEncoder(
            embed_dim=cfg.prompt_embed_dim, image_embedding_size=(e, e),
            input_image_size=(cfg.img_size, cfg.img_size), mask_in_chans=cfg.mask_in_chans),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=cfg.num_multimask_outputs,
            transformer=m.TwoWayTransformer(depth=cfg.decoder_depth,
                                            embedding_dim=cfg.prompt_embed_dim,
                                            mlp_dim=cfg.decoder_mlp_dim,
                                            num_heads=cfg.decoder_num_heads),
            transformer_dim=cfg.prompt_embed_dim, iou_head_depth=cfg.iou_head_depth,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim),
    ).eval()
    sd = {k: v for k, v in ours.state_dict().items() if not k.startswith("image_encoder.")}
    meta.load_state_dict(sd, strict=True)
    return meta


def make_predictor(ours):
    from segment_anything.predictor import SamPredictor

    low = ours.prompt_encoder.mask_input_size[0]

    class Predictor(SamPredictor):
        def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None,
                    multimask_output=True, return_logits=False):
            if mask_input is not None and mask_input.shape[-1] != low:
                x = torch.as_tensor(mask_input)[None].float()
                mask_input = torch.nn.functional.adaptive_avg_pool2d(x, (low, low))[0].numpy()
            with torch.inference_mode():
                return super().predict(point_coords, point_labels, box, mask_input,
                                       multimask_output, return_logits)

    return Predictor(meta_twin(ours))


def features_of(emb):
    n = emb.shape[0]
    feats = torch.stack([emb[z].features.float().cpu() for z in range(n)])[:, None]
    e0 = emb[0]
    return {"features": feats, "input_size": tuple(e0.input_size),
            "original_size": tuple(e0.original_size)}


def deepest_point(mask2d):
    from scipy import ndimage as ndi

    d = ndi.distance_transform_edt(np.pad(mask2d, 1))[1:-1, 1:-1]
    return np.array(np.unravel_index(np.argmax(d), d.shape), float)


def mid_slice(gt, i):
    zs = np.flatnonzero((gt == i).any((1, 2)))
    return int(zs[len(zs) // 2])


def score(pred_of, gt, ids, secs):
    """pred_of(i) -> (Z, Y, X) bool for object i."""
    ious, leaks, over, under = [], [], [], []
    for i in ids:
        p, g = pred_of(i), gt == i
        ious.append((p & g).sum() / max((p | g).sum(), 1))
        leaks.append((p & (gt > 0) & ~g).sum() / max(p.sum(), 1))
        pz, gz = p.any((1, 2)), g.any((1, 2))
        over.append(int((pz & ~gz).sum()))
        under.append(int((gz & ~pz).sum()))
    return {"iou": float(np.mean(ious)), "leak": float(np.max(leaks)),
            "over": float(np.mean(over)), "under": float(np.mean(under)),
            "ms": 1e3 * secs / len(ids)}


def run_ours(emb, gt, ids, seeds, alone):
    from napari_sam.volume import segment_volume

    t0 = time.perf_counter()
    if alone:
        res = {i: segment_volume(emb, {i: seeds[i]}).labels == i for i in ids}
        secs = time.perf_counter() - t0
        return score(lambda i: res[i], gt, ids, secs)
    lab = segment_volume(emb, seeds).labels
    secs = time.perf_counter() - t0
    return score(lambda i: lab == i, gt, ids, secs)


def run_microsam(mds, predictor, feats, gt, ids, seed_masks, projection, iou, ext):
    res = {}
    t0 = time.perf_counter()
    for i in ids:
        z, m = seed_masks[i]
        seg = np.zeros(gt.shape, np.uint8)
        seg[z] = m
        out, _ = mds.segment_mask_in_volume(
            seg, predictor, feats, np.array([z]), stop_lower=False, stop_upper=False,
            iou_threshold=iou, projection=projection, box_extension=ext)
        res[i] = out > 0
    secs = time.perf_counter() - t0
    return score(lambda i: res[i], gt, ids, secs)


def seeds_for(emb, gt, ids, kind):
    """Our prompts and micro-sam's initial masks for the same seeds."""
    from napari_sam.volume import SlicePrompt, segment_volume

    prompts, masks = {}, {}
    for i in ids:
        z = mid_slice(gt, i)
        if kind == "click":
            prompts[i] = [SlicePrompt(z, points=[deepest_point(gt[z] == i)])]
            seed = segment_volume(emb, {i: prompts[i]}, max_slices=0).labels[z] == i
        else:
            seed = gt[z] == i
            prompts[i] = [SlicePrompt(z, mask=seed)]
        masks[i] = (z, seed.astype(np.uint8))
    return prompts, masks


def stacks(args):
    from napari_sam.synthetic import nuclei_3d

    if not args.no_real:
        if (REAL / "image.tif").exists():
            import tifffile

            yield "real nuclei", tifffile.imread(REAL / "image.tif"), tifffile.imread(
                REAL / "labels.tif").astype(np.int64)
        else:
            print(f"skipping the real stack: {REAL} is missing")
    if not args.no_synthetic:
        for s in args.seeds:
            smp = nuclei_3d(seed=s)
            yield f"nuclei_3d {s}", smp.image, smp.labels


ANNOTATOR = ("single_point", 0.5, 0.05)
EVALUATION = ("mask", 0.8, 0.025)
GRID = [(p, i, e) for p in ("mask", "box", "points", "single_point", "points_and_mask")
        for i in (0.5, 0.8) for e in (0.0, 0.05)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--no-grid", action="store_true", help="only micro-sam's two default sets")
    ap.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")],
                    default=[10000, 10001, 10003], help="nuclei_3d seeds of the synthetic stacks")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        mds = import_microsam()
    except ImportError as err:
        print(f"micro-sam cannot be imported ({err}); pip install --no-deps micro-sam bioimage-cpp")
        return 1
    import napari_sam as ns
    from napari_sam.embeddings import embed

    model = ns.load_model("demo")
    predictor = make_predictor(model)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; micro-sam "
          f"{importlib.import_module('micro_sam').__version__}; stubbed (never called): "
          f"{sorted({s.split('.')[0] for s in STUBBED}) or 'nothing'}")
    rows = []
    for name, image, gt in stacks(args):
        emb = embed(image, model, batch_size=8, cache_size=gt.shape[0], compute=True)
        feats = features_of(emb)
        ids = [int(i) for i in np.unique(gt)[1:]]
        for kind in ("click", "mask"):
            prompts, masks = seeds_for(emb, gt, ids, kind)
            configs = [("ours, all at once", None), ("ours, alone", None),
                       ("micro-sam annotator defaults", ANNOTATOR),
                       ("micro-sam evaluation defaults", EVALUATION)]
            for label, cfg in configs:
                if cfg is None:
                    r = run_ours(emb, gt, ids, prompts, alone="alone" in label)
                else:
                    r = run_microsam(mds, predictor, feats, gt, ids, masks, *cfg)
                rows.append((name, kind, label, r))
                print_row(rows[-1])
            if name == "real nuclei" and kind == "click" and not args.no_grid:
                best = None
                for cfg in GRID:
                    r = run_microsam(mds, predictor, feats, gt, ids, masks, *cfg)
                    if best is None or r["iou"] > best[1]["iou"]:
                        best = (cfg, r)
                rows.append((name, kind, f"micro-sam best of grid {best[0]}", best[1]))
                print_row(rows[-1])
    print("\n| stack | seed | run | mean 3D IoU | worst leak | overshoot (slices) | "
          "undershoot (slices) | ms / object |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, kind, label, r in rows:
        print(f"| {name} | {kind} | {label} | {r['iou']:.3f} | {r['leak']:.3f} | "
              f"{r['over']:.2f} | {r['under']:.2f} | {r['ms']:.0f} |")
    return 0


def print_row(row):
    name, kind, label, r = row
    print(f"{name:14s} {kind:5s} {label:45s} IoU {r['iou']:.3f} leak {r['leak']:.3f} "
          f"over {r['over']:.2f} under {r['under']:.2f} {r['ms']:.0f} ms/object", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
