"""napari_sam.automatic.linking: one linking rule, streamed (SliceLinker) or in memory
(link_slices).

The streaming core must give exactly what the CLI's ``batch.link_slices`` gave, and the
in-memory wrapper exactly what ``automatic.link_slices`` gave before it was a wrapper (kept
below as ``_reference_link_slices``, the code of that version).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.automatic import (
    LinkPlan,
    SliceLinker,
    link_slices,
    link_streamed,
    match_by_iou,
)
from stacks import drifting_blob_slices

from . import reference_batch_linking as batch


def _random_slices(seed: int, shape=(9, 40, 40)) -> np.ndarray:
    return drifting_blob_slices(seed, shape, missed=0.3)


def _reference_link_slices(lab, iou_threshold=0.25, max_gap=1, min_z_extent=1, fill_gaps=True):
    """``napari_sam.automatic.link_slices`` as it was before the streaming core (verbatim
    logic): all consecutive pairs first, then each gap length in turn."""
    nz = lab.shape[0]
    n_per = [int(lab[z].max()) for z in range(nz)]
    offsets = np.concatenate([[0], np.cumsum(n_per)]).astype(np.int64)
    total = int(offsets[-1])
    parent = np.arange(total + 1)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    areas = [np.bincount(lab[z].ravel(), minlength=n_per[z] + 1) for z in range(nz)]
    has_next = [np.zeros(n_per[z] + 1, bool) for z in range(nz)]
    has_prev = [np.zeros(n_per[z] + 1, bool) for z in range(nz)]
    gap_links = []

    def match(z0, z1, cand0=None, cand1=None):
        return match_by_iou(lab[z0], lab[z1], n_per[z1], areas[z0], areas[z1], iou_threshold,
                            cand0, cand1)

    for z in range(nz - 1):
        for i, j in match(z, z + 1):
            parent[find(offsets[z + 1] + j)] = find(offsets[z] + i)
            has_next[z][i] = True
            has_prev[z + 1][j] = True
    for g in range(1, max_gap + 1):
        for z in range(nz - 1 - g):
            z1 = z + g + 1
            ends = ~has_next[z]
            starts = ~has_prev[z1]
            ends[0] = starts[0] = False
            for i, j in match(z, z1, ends, starts):
                parent[find(offsets[z1] + j)] = find(offsets[z] + i)
                has_next[z][i] = True
                has_prev[z1][j] = True
                gap_links.append((z, i, z1, j))
    roots = np.array([find(a) for a in range(total + 1)])
    zmin = np.full(total + 1, nz)
    zmax = np.full(total + 1, -1)
    for z in range(nz):
        ids = np.arange(offsets[z] + 1, offsets[z + 1] + 1)
        r = roots[ids[areas[z][1:] > 0]]
        np.minimum.at(zmin, r, z)
        np.maximum.at(zmax, r, z)
    extent = zmax - zmin + 1
    uniq, seen = [], set()
    for a in range(1, total + 1):
        r = roots[a]
        if r not in seen and extent[r] >= min_z_extent and zmax[r] >= 0:
            seen.add(r)
            uniq.append(r)
    root_to_id = {r: k for k, r in enumerate(uniq, start=1)}
    new_id = np.array([0] + [root_to_id.get(roots[a], 0) for a in range(1, total + 1)])
    out = np.zeros(lab.shape, np.int32)
    mapping = {}
    for z in range(nz):
        lut = np.concatenate([[0], new_id[offsets[z] + 1 : offsets[z + 1] + 1]]).astype(np.int32)
        out[z] = lut[lab[z]]
        for i in range(1, n_per[z] + 1):
            mapping[(z, i)] = int(lut[i])
    if fill_gaps:
        for z0, i, z1, j in gap_links:
            oid = mapping[(z0, i)]
            if oid:
                inter = (lab[z0] == i) & (lab[z1] == j)
                for z in range(z0 + 1, z1):
                    out[z][inter & (out[z] == 0)] = oid
    return out, mapping


LINKS = [{}, {"iou_threshold": 0.5, "max_gap": 0},
         {"iou_threshold": 0.1, "max_gap": 2, "min_z_extent": 3},
         {"max_gap": 2, "fill_gaps": False}, {"iou_threshold": 0.05, "max_gap": 4}]


def _scores(labels: np.ndarray) -> np.ndarray:
    n = int(labels.max())
    return np.linspace(0.5, 1.0, n + 1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("link", LINKS[:4])
def test_slice_linker_fed_slice_by_slice_equals_the_cli_linker(seed, link):
    """What batch.link_slices gave (up to max_gap 2, where its gap order cannot matter)."""
    per_slice = _random_slices(seed)
    kw = {"iou_threshold": 0.25, "max_gap": 1, "min_z_extent": 1, "fill_gaps": True, **link}
    n = len(per_slice)
    expected = batch.link_slices(lambda z: (per_slice[z], _scores(per_slice[z])), n,
                                 link_iou=kw["iou_threshold"], max_gap=kw["max_gap"],
                                 min_z_extent=kw["min_z_extent"], fill_gaps=kw["fill_gaps"])
    linker = SliceLinker(iou_threshold=kw["iou_threshold"], max_gap=kw["max_gap"])
    for z in range(n):
        linker.add(per_slice[z], _scores(per_slice[z]))
    plan = linker.plan(min_z_extent=kw["min_z_extent"], fill_gaps=kw["fill_gaps"])
    assert isinstance(plan, LinkPlan)
    assert plan.n_objects == expected.n_objects
    assert plan.scores == expected.scores
    assert len(plan.luts) == len(expected.luts)
    for got, want in zip(plan.luts, expected.luts):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert sorted(plan.gap_links) == sorted(expected.gap_links)
    want = list(batch.final_slices(expected, lambda z: per_slice[z], n))
    for z in range(n):
        np.testing.assert_array_equal(plan.slice_labels(z, lambda k: per_slice[k]), want[z])


@pytest.mark.parametrize("seed", [1, 3])
def test_link_streamed_is_the_cli_linker_call(seed):
    """The call that replaces ``batch.link_slices(load, n, **link)``: one pass, same plan."""
    per_slice = _random_slices(seed)
    n = len(per_slice)
    link = {"link_iou": 0.2, "max_gap": 2, "min_z_extent": 2}
    loaded = []

    def load(z):
        loaded.append(z)
        return per_slice[z], _scores(per_slice[z])

    plan = link_streamed(load, n, iou_threshold=link["link_iou"], max_gap=link["max_gap"],
                         min_z_extent=link["min_z_extent"])
    assert loaded == list(range(n))
    expected = batch.link_slices(load, n, **link)
    assert plan.n_objects == expected.n_objects > 0
    assert plan.scores == expected.scores
    for got, want in zip(plan.luts, expected.luts):
        np.testing.assert_array_equal(got, want)
    assert sorted(plan.gap_links) == sorted(expected.gap_links)


def test_slice_linker_keeps_only_the_window_of_slices():
    per_slice = _random_slices(5)
    linker = SliceLinker(max_gap=2)
    for z in range(len(per_slice)):
        linker.add(per_slice[z])
        assert len(linker._window) <= 3
    assert linker.n_slices == len(per_slice)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("link", LINKS)
def test_link_slices_equals_the_previous_in_memory_linker(seed, link):
    per_slice = _random_slices(seed)
    got, got_map = link_slices(per_slice, **link)
    want, want_map = _reference_link_slices(per_slice, **link)
    assert got.dtype == want.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    assert got_map == want_map


def test_gap_fills_are_painted_by_gap_length_then_first_slice():
    """Two closed gaps fill the same pixel of slice 3: (2 -> 5) over 2 slices and (0 -> 4)
    over 3. The shorter gap is painted first, as segment_everything always did (the CLI's
    streaming linker painted in the order it found the gaps, the longer one first)."""
    lab = np.zeros((6, 12, 12), np.int32)
    r = np.zeros((12, 12), bool)
    r[2:8, 2:8] = True  # object B: slices 0 and 4
    rp = np.zeros((12, 12), bool)
    rp[6:11, 6:11] = True  # object A: slices 2 and 5, overlapping B a little (IoU < 0.25)
    lab[0][r] = lab[4][r] = 1
    lab[2][rp] = lab[5][rp] = 1
    got, _ = link_slices(lab, max_gap=3)
    want, _ = _reference_link_slices(lab, max_gap=3)
    np.testing.assert_array_equal(got, want)
    assert got[3, 7, 7] == got[2, 7, 7] != got[0, 3, 3]  # A's fill won the shared pixel
    assert set(np.unique(got[3])) == {0, 1, 2}


def test_link_slices_checks_its_arguments():
    with pytest.raises(ValueError, match="slice_labels must be"):
        link_slices(np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="iou_threshold"):
        link_slices(np.zeros((2, 4, 4), int), iou_threshold=1.5)
    with pytest.raises(ValueError, match="max_gap"):
        SliceLinker(max_gap=-1)
    with pytest.raises(ValueError, match="min_z_extent"):
        SliceLinker().plan(min_z_extent=0)
