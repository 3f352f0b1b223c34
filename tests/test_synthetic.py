"""Tests for napari_sam.synthetic: determinism, label invariants, dtypes, contrast."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam import synthetic as S

SEEDS = tuple(range(S.HELDOUT_SEED_START, S.HELDOUT_SEED_START + 5))
CASES_2D = [(name, 2) for name in S.DOMAINS]
CASES_3D = [(name, 3) for name in S.DOMAINS_3D]
CASES = CASES_2D + CASES_3D
MIN_SIZE = {2: 30, 3: 100}  # the generators' default min_size


@functools.cache
def _sample(name: str, ndim: int, seed: int) -> S.SyntheticSample:
    registry = S.DOMAINS if ndim == 2 else S.DOMAINS_3D
    return registry[name](seed=seed)


def _grey(img: np.ndarray, labels: np.ndarray) -> np.ndarray:
    img = img.astype(np.float64)
    return img.mean(-1) if img.ndim == labels.ndim + 1 else img


def _pixel_noise(img: np.ndarray) -> float:
    """Robust per-pixel noise estimate from neighbour differences along X."""
    d = np.diff(img, axis=-1)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2)) + 1e-9


def _object_snr(img: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(mean inside object - mean of a 2 px background ring around it) / pixel noise."""
    n = int(labels.max())
    ids = np.arange(1, n + 1)
    ring = ndi.grey_dilation(labels, size=(5,) * labels.ndim) * (labels == 0)
    inside = np.asarray(ndi.mean(img, labels, ids))
    with np.errstate(invalid="ignore"):
        outside = np.asarray(ndi.mean(img, ring, ids))
    snr = (inside - outside) / _pixel_noise(img)
    return snr[np.isfinite(snr)]


# ------------------------------------------------------------------ determinism


@pytest.mark.parametrize(("name", "ndim"), CASES)
def test_same_seed_identical(name, ndim):
    registry = S.DOMAINS if ndim == 2 else S.DOMAINS_3D
    a = registry[name](seed=SEEDS[0])
    b = registry[name](seed=SEEDS[0])
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.seed == SEEDS[0] and a.domain == name


@pytest.mark.parametrize(("name", "ndim"), CASES)
def test_different_seed_differs(name, ndim):
    a, b = _sample(name, ndim, SEEDS[0]), _sample(name, ndim, SEEDS[1])
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.labels, b.labels)


# ------------------------------------------------------------------ labels


@pytest.mark.parametrize(("name", "ndim"), CASES)
def test_labels_consecutive_connected_and_large_enough(name, ndim):
    for seed in SEEDS:
        s = _sample(name, ndim, seed)
        lab = s.labels
        assert lab.dtype == np.int32
        ids = np.unique(lab)
        n = s.n_objects
        assert n >= 1, f"{name} seed {seed}: no objects"
        np.testing.assert_array_equal(ids, np.arange(0 if (lab == 0).any() else 1, n + 1))
        sizes = np.bincount(lab.ravel())[1:]
        assert sizes.min() >= MIN_SIZE[ndim], f"{name} seed {seed}: label of {sizes.min()} px"
        for i, sl in enumerate(ndi.find_objects(lab), start=1):
            _, ncomp = ndi.label(lab[sl] == i)
            assert ncomp == 1, f"{name} seed {seed}: label {i} has {ncomp} components"


@pytest.mark.parametrize(("name", "ndim"), CASES_3D)
def test_3d_objects_span_several_slices(name, ndim):
    for seed in SEEDS:
        lab = _sample(name, ndim, seed).labels
        spans = [sl[0].stop - sl[0].start for sl in ndi.find_objects(lab)]
        assert min(spans) >= 3, f"{name} seed {seed}: object spanning {min(spans)} slices"
        # and objects are really volumetric: the median spans clearly more
        assert np.median(spans) >= 4


def test_nuclei_touch_but_do_not_merge():
    # clumped layouts produce touching nuclei; labels must still separate them
    touching = 0
    for seed in SEEDS:
        lab = _sample("nuclei", 2, seed).labels
        a, b = lab[:, 1:], lab[:, :-1]
        touching += int(np.count_nonzero((a != b) & (a > 0) & (b > 0)))
    assert touching > 0


# ------------------------------------------------------------------ dtypes and shapes


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize(("name", "ndim"), CASES)
def test_dtype_and_shape(name, ndim, dtype):
    registry = S.DOMAINS if ndim == 2 else S.DOMAINS_3D
    shape = (96, 160) if ndim == 2 else (12, 64, 80)
    s = registry[name](shape, seed=SEEDS[2], dtype=dtype)
    assert s.image.dtype == np.dtype(dtype)
    assert s.labels.shape == shape
    expected = shape + (3,) if name == "underwater" else shape
    assert s.image.shape == expected
    assert s.image.max() > s.image.min()


def test_uint16_uses_varied_partial_range():
    imgs = [S.nuclei_2d(seed=s, dtype="uint16").image for s in SEEDS]
    mins = [int(i.min()) for i in imgs]
    maxs = [int(i.max()) for i in imgs]
    assert max(maxs) < 65535  # never the full 16-bit range
    assert len(set(mins)) == len(mins)  # camera offsets vary
    assert max(maxs) > 4 * min(maxs) or max(mins) > 2 * min(mins) + 50


def test_underwater_is_rgb_and_blue_green():
    for seed in SEEDS:
        s = _sample("underwater", 2, seed)
        assert s.image.shape == s.labels.shape + (3,)
        bg = s.image[s.labels == 0].astype(float).mean(0)
        assert bg[1] > bg[0] and bg[2] > bg[0], f"seed {seed}: water colour {bg}"


def test_bad_arguments():
    with pytest.raises(ValueError, match="dtype"):
        S.nuclei_2d(seed=1, dtype="float32")
    with pytest.raises(ValueError, match="dimensions"):
        S.nuclei_2d((8, 64, 64), seed=1)
    with pytest.raises(ValueError, match="mode"):
        S.xray_2d(seed=1, mode="mri")


# ------------------------------------------------------------------ learnability


@pytest.mark.parametrize("ndim", [2, 3])
def test_nuclei_brighter_than_background(ndim):
    for seed in SEEDS:
        s = _sample("nuclei", ndim, seed)
        img = _grey(s.image, s.labels)
        inside, outside = img[s.labels > 0], img[s.labels == 0]
        assert inside.mean() - outside.mean() > 1.0 * outside.std(), f"seed {seed}"
        snr = _object_snr(img, s.labels)
        assert np.median(snr) > 1.5, f"seed {seed}: median object SNR {np.median(snr):.2f}"
        assert np.mean(snr > 0) > 0.9  # nuclei are brighter than their surroundings


@pytest.mark.parametrize(
    ("name", "ndim", "margin"),
    [
        ("em_organelles", 2, 1.0),
        ("xray", 2, 1.0),
        ("underwater", 2, 0.5),
        ("em_organelles", 3, 1.0),
        ("xray", 3, 1.0),
    ],
)
def test_objects_distinguishable_from_surroundings(name, ndim, margin):
    for seed in SEEDS:
        s = _sample(name, ndim, seed)
        snr = np.abs(_object_snr(_grey(s.image, s.labels), s.labels))
        assert np.median(snr) > margin, f"{name} seed {seed}: median |SNR| {np.median(snr):.2f}"


@pytest.mark.parametrize("ndim", [2, 3])
def test_cell_membranes_brighter_than_interiors(ndim):
    for seed in SEEDS:
        s = _sample("cells_membrane", ndim, seed)
        img, lab = _grey(s.image, s.labels), s.labels
        edge = np.zeros(lab.shape, bool)
        for ax in range(lab.ndim):
            d = np.diff(lab, axis=ax) != 0
            lo = [slice(None)] * lab.ndim
            hi = [slice(None)] * lab.ndim
            lo[ax], hi[ax] = slice(0, -1), slice(1, None)
            edge[tuple(lo)] |= d
            edge[tuple(hi)] |= d
        interior = (lab > 0) & ~ndi.binary_dilation(edge, iterations=3)
        diff = img[edge & (lab > 0)].mean() - img[interior].mean()
        assert diff > 2.0 * _pixel_noise(img), f"seed {seed}"


# ------------------------------------------------------------------ datasets


def test_make_dataset_seeds_domains_and_regeneration():
    ds = S.make_dataset(["nuclei", "xray_2d"], 5, seed=100)
    assert [s.seed for s in ds] == [100, 101, 102, 103, 104]
    assert [s.domain for s in ds] == ["nuclei", "xray", "nuclei", "xray", "nuclei"]
    again = S.DOMAINS[ds[3].domain](seed=ds[3].seed)
    np.testing.assert_array_equal(again.image, ds[3].image)
    np.testing.assert_array_equal(again.labels, ds[3].labels)


def test_make_dataset_3d_and_all():
    ds = S.make_dataset(
        "all",
        len(S.DOMAINS_3D),
        seed=S.HELDOUT_SEED_START,
        ndim=3,
        shape=(8, 48, 48),
        dtype="uint8",
    )
    assert {s.domain for s in ds} == set(S.DOMAINS_3D)
    assert all(s.image.shape == (8, 48, 48) and s.image.dtype == np.uint8 for s in ds)
    assert len(S.make_dataset("all", 10, seed=0)) == 10


def test_make_dataset_refuses_straddling_heldout_boundary_and_unknown_domains():
    with pytest.raises(ValueError, match="held-out"):
        S.make_dataset("nuclei", 10, seed=S.HELDOUT_SEED_START - 5)
    with pytest.raises(KeyError, match="unknown"):
        S.make_dataset(["plankton"], 1, seed=0)
    with pytest.raises(KeyError, match="unknown"):
        S.make_dataset(["underwater"], 1, seed=0, ndim=3)


def test_generation_speed_benchmark_print():
    """Prints generation times (run with -s); deliberately no timed assertion."""
    for registry, tag in ((S.DOMAINS, "2d"), (S.DOMAINS_3D, "3d")):
        for name, fn in registry.items():
            t0 = time.perf_counter()
            s = fn(seed=S.HELDOUT_SEED_START + 99)
            dt = (time.perf_counter() - t0) * 1e3
            print(f"synthetic {name}_{tag}: {dt:.1f} ms, {s.n_objects} objects")
            assert s.n_objects >= 1


def test_layer_data_tuples():
    s3 = S.nuclei_3d((8, 48, 48), seed=S.HELDOUT_SEED_START, anisotropy=2.5)
    (img, ikw, itype), (lab, lkw, ltype) = s3.layer_data()
    assert (itype, ltype) == ("image", "labels")
    assert img is s3.image and lab is s3.labels
    assert ikw["scale"] == lkw["scale"] == (2.5, 1.0, 1.0) and not ikw["rgb"]
    (rgb, rkw, _), _ = _sample("underwater", 2, SEEDS[0]).layer_data()
    assert rkw["rgb"] and rgb.shape[-1] == 3


# ------------------------------------------------------------------ exact scenes

#: sha256 (first 16 hex digits) of image, labels and meta of fixed scenes, recorded on the
#: single-module generator before it became the ``synthetic`` package (numpy 2.4.6, scipy
#: 1.17.1): the package must draw the very same scenes (the demo model's quality tests and
#: its training data depend on them). Keys: ``<generator>/<seed>[/<dtype or shape>]``.
SCENE_HASHES = {
    "nuclei_2d/0": "77f05ceb48b8fd8f",
    "nuclei_2d/3": "65bee95e0aec8b53",
    "nuclei_2d/10000": "037d24658d26ca6f",
    "nuclei_2d/7/uint16": "64372f6757cea5e8",
    "nuclei_2d/5/(96,128)": "4b2a68fd6179fb7c",
    "cells_membrane_2d/0": "5cd89d4a7027f3fa",
    "cells_membrane_2d/3": "6424eb3276e70d06",
    "cells_membrane_2d/10000": "c980727af0906c50",
    "cells_membrane_2d/7/uint16": "ec9c158a164b9e7a",
    "cells_membrane_2d/5/(96,128)": "d702394675721048",
    "em_organelles_2d/0": "4052048cd93fa72a",
    "em_organelles_2d/3": "7f50b2258999f0b9",
    "em_organelles_2d/10000": "dddfc3f3cefefa77",
    "em_organelles_2d/7/uint16": "7508f03ee038f9aa",
    "em_organelles_2d/5/(96,128)": "536917399f292e98",
    "xray_2d/0": "b6a0b27e10b6a06c",
    "xray_2d/3": "b5ac4f550e96c296",
    "xray_2d/10000": "1a48e22d2d995ae3",
    "xray_2d/7/uint16": "903243f268ab1c52",
    "xray_2d/5/(96,128)": "cd7972a2a9fe1899",
    "underwater_2d/0": "a0f2f502ce77c459",
    "underwater_2d/3": "434918c0132fb66d",
    "underwater_2d/10000": "f68a96e1fe25d9e3",
    "underwater_2d/7/uint16": "791b24b8dfff280a",
    "underwater_2d/5/(96,128)": "c5877ff7a81df51f",
    "nuclei_3d/0": "28487a3ecfdaf33a",
    "nuclei_3d/10001": "30be0951c7357d0a",
    "nuclei_3d/4/(12,48,64)": "d573f34b8a5b272b",
    "cells_membrane_3d/0": "de0673738bf0d8f8",
    "cells_membrane_3d/10001": "77c001fcaa22b08c",
    "cells_membrane_3d/4/(12,48,64)": "d7c1ca9295019225",
    "em_organelles_3d/0": "82ad8d19839a0d80",
    "em_organelles_3d/10001": "d23e05f461dd6d54",
    "em_organelles_3d/4/(12,48,64)": "536212f365560375",
    "xray_3d/0": "b8f8cb495eff819f",
    "xray_3d/10001": "4f20608c6c82884a",
    "xray_3d/4/(12,48,64)": "5e01cc654e4d65f7",
}
HASHED_WITH = ("2.4.6", "1.17.1")


def _scene_hash(s: S.SyntheticSample) -> str:
    import hashlib
    import json

    h = hashlib.sha256()
    for a in (s.image, s.labels):
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(s.meta, sort_keys=True, default=repr).encode())
    return h.hexdigest()[:16]


def _scene_for(key: str) -> S.SyntheticSample:
    name, seed, *extra = key.split("/")
    domain, tag = name.rsplit("_", 1)
    fn = (S.DOMAINS if tag == "2d" else S.DOMAINS_3D)[domain]
    if not extra:
        return fn(seed=int(seed))
    if extra[0].startswith("("):
        return fn(tuple(int(v) for v in extra[0].strip("()").split(",")), seed=int(seed))
    return fn(seed=int(seed), dtype=extra[0])


def test_scenes_are_bit_identical_to_the_recorded_ones():
    import scipy

    if (np.__version__, scipy.__version__) != HASHED_WITH:
        pytest.skip(f"hashes recorded with numpy/scipy {HASHED_WITH}; this is "
                    f"{np.__version__}/{scipy.__version__} (float rounding may differ)")
    got = {key: _scene_hash(_scene_for(key)) for key in SCENE_HASHES}
    changed = sorted(k for k in SCENE_HASHES if got[k] != SCENE_HASHES[k])
    assert not changed, f"scenes changed: {changed}"
