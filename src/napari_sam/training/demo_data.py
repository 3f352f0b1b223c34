"""The demo model's data: a stream of synthetic training scenes and its validation images.

Training scenes use seeds ``< TRAIN_SEED_END`` (9000), validation seeds 9000-9999, and the
tests seeds ``>= 10000``. :class:`SyntheticStream` keeps a pool of preprocessed images that
is refreshed with new scenes as training goes; its :meth:`~SyntheticStream.state` lets a
resumed run rebuild the very same pool and continue the same stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sam.preprocess import intensity_limits

from .data import TrainItem, prepare_item
from .trainer import int_texts, text_ints

__all__ = ["DOMAIN_WEIGHTS", "TRAIN_SEED_END", "VAL_SEEDS", "SyntheticStream",
           "make_scene_items", "validation_items", "validation_volumes"]

Spec = tuple  # (domain, ndim, seed, dtype, shape, pair_seed)

#: Share of training images per (domain, dimensionality).
DOMAIN_WEIGHTS: dict[tuple[str, int], float] = {
    ("nuclei", 2): 0.34,
    ("cells_membrane", 2): 0.08,
    ("em_organelles", 2): 0.08,
    ("xray", 2): 0.08,
    ("underwater", 2): 0.08,
    ("nuclei", 3): 0.22,
    ("cells_membrane", 3): 0.05,
    ("em_organelles", 3): 0.04,
    ("xray", 3): 0.03,
    # training-only realistic nuclei (napari_sam.synthetic.nuclei.nuclei_real_*): small
    # crowded nuclei upscaled to the input, haze, few photons, z wobble; off by default,
    # e.g. ``--weights nuclei_real_3d=0.2,nuclei_real_2d=0.1``
    ("nuclei_real", 2): 0.0,
    ("nuclei_real", 3): 0.0,
}

_SHAPES_2D = [(256, 256)] * 6 + [(192, 256), (256, 192), (320, 320), (384, 384), (512, 512),
                                 (224, 320), (160, 160)]
_SHAPES_3D = [(24, 128, 128), (32, 128, 128), (16, 192, 192), (32, 160, 160)]
# realistic nuclei come in small images too (upscaled to the input, as real crops are)
_SHAPES_REAL_2D = [(64, 64), (96, 96), (128, 128), (80, 112), (160, 160), (256, 256)]
_SHAPES_REAL_3D = [(24, 48, 48), (32, 64, 64), (40, 64, 64), (24, 80, 80), (32, 96, 96),
                   (32, 128, 128)]
#: (domain, ndim) -> scene shapes to draw from
_SHAPES = {key: (_SHAPES_2D if key[1] == 2 else _SHAPES_3D) for key in DOMAIN_WEIGHTS}
_SHAPES.update({("nuclei_real", 2): _SHAPES_REAL_2D, ("nuclei_real", 3): _SHAPES_REAL_3D})
TRAIN_SEED_END = 9000
VAL_SEEDS = (9000, 10_000)


def make_scene_items(spec: tuple[str, int, int, str, tuple[int, ...], int], img_size: int
                ) -> list[TrainItem]:
    """The training items of one drawn scene: one image, or two pairs of nearby slices of a
    volume. ``spec`` is (domain, ndim, seed, dtype, shape, pair_seed); a pure function of it,
    so worker processes make the same items as the main process."""
    from napari_sam import synthetic as syn
    from napari_sam.synthetic.nuclei import nuclei_real_2d, nuclei_real_3d

    domain, ndim, seed, dtype, shape, pair_seed = spec
    key = f"{domain}_{ndim}d"
    # the training-only realistic nuclei are not among the synthetic domains
    gens = {**(syn.DOMAINS if ndim == 2 else syn.DOMAINS_3D),
            "nuclei_real": nuclei_real_2d if ndim == 2 else nuclei_real_3d}  # fmt: skip
    gen = gens[domain]
    if ndim == 2:
        kw = {} if domain == "underwater" else {"dtype": dtype}
        s = gen(shape, seed=seed, **kw)
        item = prepare_item(s.image, s.labels, img_size, name=f"{key}:{seed}")
        return [item] if len(item.ids) else []
    s = gen(shape, seed=seed, dtype=dtype)
    limits = intensity_limits(s.image)
    zs = [z for z in range(s.labels.shape[0]) if s.labels[z].any()]
    rng = np.random.default_rng(pair_seed)
    out = []
    # two pairs of nearby slices (1 to 3 apart, either direction): the trainer prompts
    # each slice's objects on its partner the way segment_volume propagates, including
    # objects that end before the partner (their target there is empty)
    for z in rng.choice(zs, min(2, len(zs)), replace=False) if zs else []:
        z2 = int(np.clip(z + rng.choice([-3, -2, -1, 1, 2, 3]), 0, s.labels.shape[0] - 1))
        pair = [prepare_item(s.image[k], s.labels[k], img_size,
                             contrast_limits=limits, name=f"{key}:{seed}[z={k}]")
                for k in (int(z), z2)]
        if z2 != z and len(pair[0].ids):
            pair[0].meta["partner"] = pair[1]
        out += [it for it in pair if len(it.ids)]
    return out



def _spec_from_state(spec) -> Spec:
    domain, ndim, seed, dtype, shape, pair_seed = spec
    return str(domain), int(ndim), int(seed), str(dtype), tuple(int(s) for s in shape), \
        int(pair_seed)


class SyntheticStream:
    """Pool of preprocessed synthetic training images, refreshed as training goes.

    Each new image uses the next training seed (< 9000) with a domain, size and dtype drawn
    from ``DOMAIN_WEIGHTS``; 3D volumes contribute two pairs of nearby slices (volume-wide
    contrast, like ``embed``).

    With ``workers > 0`` new scenes are made by that many worker processes while the model
    trains (a GPU outruns one CPU core making scenes): :meth:`refresh` then swaps in whatever
    the workers have finished and never waits. The pool at start is made the same way.

    A resumed run passes ``state`` (from :meth:`state`): the pool is rebuilt from the scenes
    it held (each a pure function of its spec) and the stream continues where it stopped.
    """

    def __init__(self, img_size: int, *, pool_size: int = 160, seed: int = 0,
                 weights: dict[tuple[str, int], float] | None = None, workers: int = 0,
                 state: dict[str, Any] | None = None) -> None:
        self.img_size = img_size
        self.rng = np.random.default_rng(seed)
        self.weights = dict(weights or DOMAIN_WEIGHTS)
        self.keys = list(self.weights)
        p = np.array([self.weights[k] for k in self.keys], float)
        self.p = p / p.sum()
        self.next_seed = 0
        self.generated = 0
        self.counts: dict[str, int] = {}
        self.pool: list[TrainItem] = []
        #: (spec, index in that scene's items) of every pool entry, for :meth:`state`
        self.pool_specs: list[tuple[Spec, int]] = []
        self._executor = None
        self._pending: list = []
        self._pending_specs: list[Spec] = []
        if workers > 0:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the parent may hold CUDA, which forked children must not inherit
            self._executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
            self._in_flight = 2 * workers
        if state is not None:
            self._restore(state)
            return
        if self._executor is not None:
            while len(self.pool) < pool_size:
                self._submit(max(self._in_flight, pool_size - len(self.pool)))
                for fut, spec in zip(self._pending, self._pending_specs):
                    self._add(spec, fut.result())
                self._pending, self._pending_specs = [], []
        while len(self.pool) < pool_size:
            spec = self._spec()
            self._add(spec, make_scene_items(spec, self.img_size))
        self.pool = self.pool[:pool_size]
        self.pool_specs = self.pool_specs[:pool_size]
        if self._executor is not None:
            self._submit(self._in_flight)

    def _add(self, spec: Spec, items: list[TrainItem]) -> None:
        self.pool.extend(items)
        self.pool_specs.extend((spec, j) for j in range(len(items)))

    def _seed(self) -> int:
        s = self.next_seed
        self.next_seed += 1
        if self.next_seed >= TRAIN_SEED_END:  # reuse seeds with a different size/dtype draw
            self.next_seed = 0
        return s

    def _spec(self) -> tuple[str, int, int, str, tuple[int, ...], int]:
        domain, ndim = self.keys[self.rng.choice(len(self.keys), p=self.p)]
        seed = self._seed()
        dtype = "uint8" if self.rng.random() < 0.35 else "uint16"
        shapes = _SHAPES[domain, ndim]
        shape = shapes[self.rng.integers(len(shapes))]
        key = f"{domain}_{ndim}d"
        self.counts[key] = self.counts.get(key, 0) + 1
        self.generated += 1
        return domain, ndim, seed, dtype, tuple(shape), int(self.rng.integers(2**31))

    def _submit(self, n: int) -> None:
        for _ in range(n):
            self._submit_spec(self._spec())

    def _submit_spec(self, spec: Spec) -> None:
        self._pending.append(self._executor.submit(make_scene_items, spec, self.img_size))
        self._pending_specs.append(spec)

    def refresh(self, n: int = 1) -> None:
        """Replace random pool entries with new images: ``n`` made now, or (with workers)
        every scene the workers have finished since the last call."""
        if self._executor is None:
            specs = [self._spec() for _ in range(n)]
            new = [(spec, j, it) for spec in specs
                   for j, it in enumerate(make_scene_items(spec, self.img_size))]
        else:
            done = [i for i, f in enumerate(self._pending) if f.done()]
            new = [(self._pending_specs[i], j, it) for i in done
                   for j, it in enumerate(self._pending[i].result())]
            keep = [i for i in range(len(self._pending)) if i not in set(done)]
            self._pending = [self._pending[i] for i in keep]
            self._pending_specs = [self._pending_specs[i] for i in keep]
            self._submit(len(done))
        for spec, j, item in new:
            slot = self.rng.integers(len(self.pool))
            self.pool[slot] = item
            self.pool_specs[slot] = (spec, j)

    def state(self) -> dict[str, Any]:
        """What :class:`SyntheticStream` (``state=``) needs to continue this stream: the
        generator, the seed counter and the scene specs of the pool and of the scenes in
        flight (plain lists and ints, for a training state file)."""
        return {
            "rng": text_ints(self.rng.bit_generator.state),
            "next_seed": self.next_seed,
            "generated": self.generated,
            "counts": dict(self.counts),
            "pool": [[list(spec[:4]) + [list(spec[4]), spec[5]], j]
                     for spec, j in self.pool_specs],
            "pending": [list(spec[:4]) + [list(spec[4]), spec[5]]
                        for spec in self._pending_specs],
        }

    def _restore(self, state: dict[str, Any]) -> None:
        specs = [(_spec_from_state(s), int(j)) for s, j in state["pool"]]
        unique = list(dict.fromkeys(spec for spec, _ in specs))
        if self._executor is not None:
            made = dict(zip(unique, self._executor.map(
                make_scene_items, unique, [self.img_size] * len(unique))))
        else:
            made = {spec: make_scene_items(spec, self.img_size) for spec in unique}
        self.pool = [made[spec][j] for spec, j in specs]
        self.pool_specs = specs
        self.rng.bit_generator.state = int_texts(state["rng"])
        self.next_seed = int(state["next_seed"])
        self.generated = int(state["generated"])
        self.counts = {str(k): int(v) for k, v in state["counts"].items()}
        if self._executor is not None:
            for spec in state["pending"]:
                self._submit_spec(_spec_from_state(spec))

    def close(self) -> None:
        """Stop the worker processes (no-op without workers)."""
        if self._executor is not None:
            for f in self._pending:
                f.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def batch(self, rng: np.random.Generator, batch_size: int) -> list[TrainItem]:
        """``batch_size`` pool images; an image paired with a neighbouring slice brings its
        partner along (so the trainer can propagate between them)."""
        idx = rng.choice(len(self.pool), batch_size, replace=False)
        out: list[TrainItem] = []
        for i in idx:
            if len(out) >= batch_size:
                break
            it = self.pool[i]
            if any(it is o for o in out):
                continue
            out.append(it)
            partner = it.meta.get("partner")
            if partner is not None and len(out) < batch_size and not any(partner is o for o in out):
                out.append(partner)
        return out


def validation_items(img_size: int, n_nuclei: int = 6, n_other: int = 1) -> list[TrainItem]:
    """The demo's validation images: seeds 9000-9999 (neither training nor test seeds)."""
    from napari_sam import synthetic as syn

    items = []
    seed = VAL_SEEDS[0]
    for _ in range(n_nuclei):
        s = syn.nuclei_2d((256, 256), seed=seed)
        items.append(prepare_item(s.image, s.labels, img_size, name=f"nuclei:{seed}",
                                  meta={"domain": "nuclei"}))
        seed += 1
    for domain, fn in syn.DOMAINS.items():
        if domain == "nuclei":
            continue
        for _ in range(n_other):
            s = fn((256, 256), seed=seed)
            items.append(prepare_item(s.image, s.labels, img_size, name=f"{domain}:{seed}",
                                      meta={"domain": domain}))
            seed += 1
    # at most 20 objects per image keeps validation to a few seconds
    rng = np.random.default_rng(0)
    for it in items:
        ids = np.unique(it.labels[it.labels > 0])
        it.meta["eval_ids"] = np.sort(rng.choice(ids, min(20, len(ids)), replace=False))
    return items


def validation_volumes(seeds: tuple[int, ...] = (9500, 9501)) -> list:
    """3D nuclei volumes (32, 128, 128) of validation seeds for the propagation score."""
    from napari_sam import synthetic as syn

    assert all(VAL_SEEDS[0] <= s < VAL_SEEDS[1] for s in seeds)
    return [syn.nuclei_3d(seed=s) for s in seeds]
