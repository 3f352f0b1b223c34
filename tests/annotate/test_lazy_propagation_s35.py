"""Propagate embeds the slices (and, on tiled stacks, the tiles) the object reaches, not the
whole stack first: a user propagating one nucleus through a 120 x 1024 x 1024 stack waited
360 s while every tile of every slice was encoded."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam.annotate import AnnotationSession

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_choice():
    from napari_sam.annotate.model_choice import model_choices
    from napari_sam.models.registry import weights_dir

    if not (weights_dir() / "demo.pt").is_file():
        pytest.skip("the bundled demo model is not installed yet")
    return next(c for c in model_choices() if c.is_demo)


def _short_nucleus_stack(n_slices: int, size: int):
    """(n_slices, size, size) float32 noise with one bright ball (radius 9 px, 5 slices
    thick around the middle slice) and its labels."""
    rng = np.random.default_rng(3)
    zz, yy, xx = np.mgrid[:n_slices, :size, :size]
    mid, c = n_slices // 2, size // 2
    ball = ((zz - mid) / 2.5) ** 2 + ((yy - c) ** 2 + (xx - c) ** 2) / 81 < 1
    img = rng.normal(30, 4, (n_slices, size, size)).astype(np.float32)
    img[ball] += 120
    return img, ball, mid, c


def _propagated(stack, choice, z, rc, embed_first: bool):
    s = AnnotationSession()
    s.set_image(stack, name="stack")
    s.set_model(choice)
    s.go_to_slice(z)
    if embed_first:
        s.compute_embeddings()
    s.add_point(z, *rc)
    s.propagate()
    return s


def test_propagating_one_object_embeds_only_the_slices_it_reaches(demo_choice):
    """A 5-slice nucleus in a 40-slice stack: most slices are never embedded, and the
    result is the one propagating on a fully embedded stack gives."""
    stack, ball, mid, c = _short_nucleus_stack(40, 64)
    lazy = _propagated(stack, demo_choice, mid, (c, c), embed_first=False)
    embedded = 40 - len(lazy.emb.missing(range(40)))
    assert embedded <= 16, f"{embedded} of 40 slices embedded for a 5-slice object"
    full = _propagated(stack, demo_choice, mid, (c, c), embed_first=True)
    assert np.array_equal(np.asarray(lazy.volume.labels), np.asarray(full.volume.labels))
    got = np.asarray(lazy.volume.labels) == 1
    assert (got & ball).sum() / (got | ball).sum() >= 0.5


def test_propagating_in_a_tiled_stack_encodes_the_objects_tiles_only(demo_choice):
    """A (8, 600, 600) stack is tiled in 9 windows: propagating one nucleus encodes the
    windows it lies in (and maybe a zoomed-out view), not the 72 windows of every slice."""
    from napari_sam import synthetic

    sample = synthetic.nuclei_3d((8, 600, 600), seed=10_011)
    lab = sample.labels[4]
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    i = int(ids[counts.argmax()])
    r, c = (int(v) for v in ndi.center_of_mass(lab == i))
    s = _propagated(sample.image, demo_choice, 4, (r, c), embed_first=False)
    assert len(s.emb.tiling) == 9
    encoded = sum(8 - len(s.emb.window_stack(w).missing(range(8))) for w in range(9))
    # the click's own slice decodes in the windows holding it; the others in its window
    assert encoded <= 2 * 8 + 4, f"{encoded} of 72 slice windows encoded for one object"
    got = np.asarray(s.volume.labels) == 1
    gt = sample.labels == i
    assert (got & gt).sum() / (got | gt).sum() >= 0.5
