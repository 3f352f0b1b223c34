"""A click on a large (tiled) image is decoded as soon as the windows it needs are encoded
(napari_sam.annotate.click_first), not after every window of the slice; its preview is the
one the whole slice's embeddings give (same masks and scores), also where the object needs a
zoomed-out view; the slice's other windows are embedded afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate import AnnotationSession

SIZE, CENTRE, RADIUS = 1400, (700, 650), 190


@pytest.fixture(scope="module")
def demo_choice():
    from napari_sam.annotate.model_choice import model_choices

    return next(c for c in model_choices() if c.is_demo)


@pytest.fixture(scope="module")
def image():
    """A 1400 x 1400 image (49 windows of the demo model): a disk larger than a window and a
    small blob."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disk = (yy - CENTRE[0]) ** 2 + (xx - CENTRE[1]) ** 2 < RADIUS ** 2
    blob = (yy - 200) ** 2 + (xx - 1150) ** 2 < 15 ** 2
    return ((disk | blob) * 120 + 30 + rng.normal(0, 10, disk.shape)).clip(0, 255).astype(
        np.uint8)


class Recording(AnnotationSession):
    """A session that notes, each time a preview is drawn, how many windows of slice 0 were
    still not embedded (the ``render`` hook: what the dock draws)."""

    def __init__(self):
        super().__init__()
        self.drawn: list[int] = []

    def render(self) -> None:
        if self.previews and self.emb is not None:
            tiling = self.emb.tiling
            self.drawn.append(sum(1 for i in range(len(tiling))
                                  if self.emb.window_stack(i).missing([0])))


def _previews(session):
    return [(p.key, p.score, p.view, np.asarray(p.masks).copy()) for p in session.previews]


@pytest.mark.parametrize("click", [(200, 1150), (CENTRE[0] - RADIUS + 40, CENTRE[1])],
                         ids=["small object", "zoomed out"])
def test_a_click_before_the_slice_is_embedded_decodes_in_the_windows_it_needs(
        image, demo_choice, click):
    s = Recording()
    s.set_image(image, name="big")
    s.set_model(demo_choice)
    s.add_point(0, *click)
    s.update_preview()
    n = len(s.emb.tiling)
    assert n == 49
    # drawn while most windows were not embedded yet: only those holding the click were
    assert s.drawn and s.drawn[0] >= n - 4, s.drawn
    assert not s.emb.missing([0])  # the others were embedded afterwards (the preload)
    assert "Shift+C commits" in s.status and "Meanwhile" not in s.status
    # the same preview as after embedding the whole slice first (what a click did before)
    ref = AnnotationSession()
    ref.set_image(image, name="big")
    ref.set_model(demo_choice)
    ref.compute_embeddings()
    ref.add_point(0, *click)
    ref.update_preview()
    got, want = _previews(s), _previews(ref)
    assert len(got) == len(want) == 1
    assert got[0][0] == want[0][0] and got[0][2] == want[0][2]
    assert (got[0][2] is None) == (click == (200, 1150))  # the disk's edge: zoomed out
    np.testing.assert_allclose(got[0][1], want[0][1], atol=1e-6)
    np.testing.assert_array_equal(got[0][3], want[0][3])
    assert s.commit().ids == [1]
    np.testing.assert_array_equal(s.labels[0] == 1, ref.previews[0].mask)


def test_the_embedding_a_click_starts_only_makes_the_embeddings_of_a_tiled_image(
        image, demo_choice):
    """Its ``pause`` set from the start (what a click does, ``click_pause``): the model is
    loaded and the tiled embeddings made, no window is encoded (the click is decoded on
    demand next), and the status does not say the embeddings are ready."""
    s = AnnotationSession()
    s.set_image(image, name="big")
    s.set_model(demo_choice)
    s.compute_embeddings([0], pause=s.click_pause())
    assert s.predictor is not None and s.emb is not None and s.emb.stopped
    assert s.emb.predictor.encoder_calls == 0 and s.emb.missing([0]) == [0]
    assert "Embeddings ready" not in s.status
    s.compute_embeddings([0])  # without: every window
    assert not s.emb.missing([0]) and "Embeddings ready (1 slice, tiled" in s.status


class HeldDecode(AnnotationSession):
    """A session whose first on-demand decode job is held until :meth:`release` (what a
    worker thread still decoding looks like to the Qt thread)."""

    held = None

    def start_job(self, gen, description, on_returned, then=None):
        if self.held is None and description.startswith("Decoding the click"):
            self.held = (gen, on_returned)

            class Running:
                running, cancelled, pause, phase, description = True, False, None, "", "held"

            self.job = Running()
            return None
        return super().start_job(gen, description, on_returned, then)

    def release(self):
        from napari_sam.annotate.jobs import run_to_end

        gen, on_returned = self.held
        self.job = None
        on_returned(run_to_end(gen, self._say))


@pytest.mark.parametrize("meanwhile", ["click deleted", "other slice previewed"])
def test_an_on_demand_decode_no_longer_wanted_is_not_shown(demo_choice, meanwhile):
    """The user deletes the click, or previews an embedded slice, while slice 0's click is
    still decoded on demand: its result must not come back as the preview (a commit would
    then write it on the wrong slice, or a deleted point's mask)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:520, :520]
    blob = (yy - 100) ** 2 + (xx - 400) ** 2 < 15 ** 2
    img = np.where(blob, 150, 30)[None].repeat(2, 0) + rng.normal(0, 5, (2, 520, 520))
    s = HeldDecode()
    s.set_image(img.clip(0, 255).astype(np.uint8), name="big")
    s.set_model(demo_choice)
    s.compute_embeddings([1])  # slice 1 embedded, slice 0 not
    s.z = 0
    s.add_point(0, 100, 400)
    s.update_preview()
    assert s.held is not None and s.previews == []  # decoding on demand
    if meanwhile == "click deleted":
        s.clear_prompts()
        s.update_preview()
        wanted = []
    else:
        s.z = 1
        s.add_point(1, 100, 400)
        s.update_preview()
        wanted = [p.z for p in s.previews]
        assert wanted == [1]
    s.release()
    assert [p.z for p in s.previews] == wanted
