"""The annotation session on images larger than the model input (no napari, no Qt): tiled
embeddings, clicks decoded through napari_sam.tiled_prompts.decode_tiled, refining a label
on a tiled image, the status line, the tiling switch and what a session file records.

The demo model's input is 256 px, so a 600 x 600 image is tiled (3 x 3 windows of 256 px).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam.annotate import AnnotationSession
from napari_sam.annotate.jobs import Phase

pytestmark = pytest.mark.slow


def _iou(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@pytest.fixture(scope="module")
def demo_choice():
    from napari_sam.annotate.model_choice import model_choices
    from napari_sam.models.registry import weights_dir

    if not (weights_dir() / "demo.pt").is_file():
        pytest.skip("the bundled demo model is not installed yet")
    return next(c for c in model_choices() if c.is_demo)


@pytest.fixture(scope="module")
def sample():
    from napari_sam import synthetic

    return synthetic.nuclei_2d((600, 600), seed=10_027, radius=(6, 12), n_objects=120,
                               min_size=40)


def _session(sample, choice) -> AnnotationSession:
    s = AnnotationSession()
    s.set_image(sample.image, name="nuclei")
    s.set_model(choice)
    return s


def _nucleus_across_a_core_border(sample, tiling):
    """(id, (row, col)) of a nucleus whose innermost pixel lies within 3 px of a core border
    it reaches across."""
    cuts = [sorted({w.core[a] for w in tiling.windows if w.core[a] > 0}) for a in (0, 1)]
    for i, box in enumerate(ndi.find_objects(sample.labels), start=1):
        gt = sample.labels[box] == i
        dist = ndi.distance_transform_edt(np.pad(gt, 1))[1:-1, 1:-1]
        rc = [int(v) + s.start for v, s in zip(np.unravel_index(dist.argmax(), gt.shape), box)]
        if any(abs(rc[a] - k) <= 3 and box[a].start < k < box[a].stop
               for a in (0, 1) for k in cuts[a]):
            return i, tuple(rc)
    raise AssertionError("no nucleus across a core border")


def test_a_large_image_is_embedded_in_tiles_and_clicks_decode_in_them(sample, demo_choice,
                                                                      monkeypatch):
    import napari_sam.edge_threshold as et
    from napari_sam.tiled_prompts import decode_tiled

    made = []  # tiled masks are cut at the threshold: no edge map is made for them
    monkeypatch.setattr(et, "edge_map", lambda *a: made.append(a) or (_ for _ in ()).throw(
        AssertionError("an edge map was made for a tiled slice")))
    s = _session(sample, demo_choice)
    said = []
    s.notify_status = said.append
    s.compute_embeddings()
    tiled = s.emb[0]
    assert len(tiled.tiling) == 9 and tiled.tiling.window == 256
    assert "Embedding 600 x 600 in 9 tiles of 256 px" in said[1]
    assert s.status.startswith("Embeddings ready (1 slice, tiled: 600 x 600 in 9 tiles of "
                               "256 px (overlapping by 64 px or more); untick 'Tile large "
                               "images'")
    assert s.embedding_summary() == "embedded in 9 tiles"

    i, (r, c) = _nucleus_across_a_core_border(sample, tiled.tiling)
    s.add_point(0, r, c)
    (p,) = s.update_preview()
    direct = decode_tiled(s.predictor, tiled, np.array([[r, c]], np.float32), np.array([1]))
    assert p.masks.shape == (3, 600, 600) and np.array_equal(p.masks, direct.masks)
    assert p.index == int(direct.scores.argmax()) and not p.cut and not p.edges and not made
    assert "may be cut" not in s.status
    commit = s.commit()
    assert commit.ids == [1] and np.unique(s.labels).tolist() == [0, 1]
    assert _iou(s.labels[0] == 1, sample.labels == i) >= 0.6
    assert s.session_state().settings["tiling"] == tiled.tiling.key()

    # refining label 1 on the tiled image: its mask is the prompt, the commit replaces it
    s.refine, s.refine_label = True, 1
    s.add_point(0, r, c)
    (p,) = s.update_preview()
    assert p.mask_prompt and _iou(p.mask, s.labels[0] == 1) >= 0.5
    assert s.commit().ids == [1]


def test_tiling_off_embeds_the_image_whole(sample, demo_choice):
    s = _session(sample, demo_choice)
    s.compute_embeddings()
    tiled = s.emb
    s.set_tiling(False)
    assert s.emb is None  # embeddings are kept per choice: nothing for "off" yet
    s.compute_embeddings()
    assert getattr(s.emb, "tiling", None) is None and s.embedding_summary() == "embedded"
    assert s.status == "Embeddings ready (1 slice). [demo model]"
    s.add_point(0, 300, 300)
    (p,) = s.update_preview()
    whole = s.predictor.predict_batch(embedding=s.emb[0], points=np.array([[[300.0, 300.0]]]),
                                      labels=np.array([[1]]))
    # untiled, the demo model's masks are cut on the slice's edges (docs/models.md)
    from napari_sam.edge_threshold import edge_aligned_masks, edge_map

    up = s.predictor.upsample_logits(whole.logits[0].float(), s.emb[0])
    edges = edge_map(np.asarray(s.source.stack[0]))
    assert p.edges and np.array_equal(p.masks, edge_aligned_masks(up, edges)[0])
    s.set_tiling(True)
    assert s.emb is tiled  # the tiled embeddings were kept


def test_preview_says_when_the_mask_may_be_cut_at_the_tiles_edge(sample, demo_choice,
                                                                monkeypatch):
    """decode_tiled flags candidates that reach the decoded windows' outer edge (the demo
    model does not segment objects that large, so its flags are set here): the preview of
    such a candidate says the object may be cut and what to do; another one does not."""
    import napari_sam.tiled_prompts as tp

    real = tp.decode_tiled

    def flagged(*args, **kwargs):
        res = real(*args, **kwargs)
        res.cuts = np.arange(len(res.scores)) == int(res.scores.argmax())
        res.cut = True
        return res

    monkeypatch.setattr(tp, "decode_tiled", flagged)
    s = _session(sample, demo_choice)
    s.add_point(0, 300, 300)
    (p,) = s.update_preview()
    assert p.cut
    assert "reaches beyond the tiles around its prompts" in s.status
    assert "click its missing part too" in s.status
    assert "untick 'Tile large images'" in s.status
    s.next_candidate()
    assert not p.cut and "tiles" not in s.status


def test_a_stack_of_large_slices_is_embedded_slice_by_tile_with_progress(demo_choice):
    """The embedding job of a (3, 600, 600) stack: a status line naming the tiling, then
    progress over slices x tiles up to 27; closing the job (Cancel) mid-way stops it."""
    from napari_sam import synthetic

    stack = synthetic.nuclei_3d((4, 600, 600), seed=10_013).image[:3]
    s = AnnotationSession()
    s.set_image(stack, name="stack")
    s.set_model(demo_choice)
    job = s._prepare_gen(None)
    said = [v for v in job if isinstance(v, str)]
    # the job ran to its end above; its progress is checked on a fresh one
    assert said == ["Embedding 600 x 600 in 9 tiles of 256 px (overlapping by 64 px or more) "
                    "on each of 3 slices ..."]
    job = s._prepare_gen(None)
    values = list(job)
    reports = [v for v in values if isinstance(v, tuple)]
    assert reports[-1] == (27, 27) and [d for d, _ in reports] == sorted(d for d, _ in reports)
    # named phases (the model is loaded first: nothing was adopted from the job above),
    # each announced before its first count
    phases = [(i, v.name) for i, v in enumerate(values) if isinstance(v, Phase)]
    assert [name for _, name in phases] == ["loading the model 'demo'", "embedding tiles"]
    assert values[phases[-1][0] + 1] == (0, 27)
    job = s._prepare_gen(None)
    for value in job:
        if isinstance(value, tuple) and value[0] >= 3:
            break
    job.close()  # what Cancel does: the embedding stops, nothing is adopted
    assert s.emb is None
    s.compute_embeddings()
    assert s.embedding_summary() == "3 of 3 slices embedded in 9 tiles"
    s.go_to_slice(1)
    s.add_point(1, 300, 300)
    (p,) = s.update_preview()
    assert p.z == 1 and p.masks.shape == (3, 600, 600)


def test_propagation_through_a_tiled_stack_gives_the_object_in_the_stack_frame(demo_choice):
    """Propagate a click through a (6, 600, 600) stack embedded in tiles: the preview is
    what napari_sam.segment_volume gives on the same tiled embeddings, one object over the
    whole stack's frame, close to the ground truth; commit writes it as label 1."""
    from napari_sam import segment_volume, synthetic
    from napari_sam.volume import SlicePrompt

    sample = synthetic.nuclei_3d((6, 600, 600), seed=10_011)
    s = AnnotationSession()
    s.set_image(sample.image, name="stack")
    s.set_model(demo_choice)
    s.go_to_slice(3)
    lab = sample.labels[3]
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    i = int(ids[counts.argmax()])
    r, c = (int(v) for v in ndi.center_of_mass(lab == i))
    s.add_point(3, r, c)
    (shown,) = s.update_preview()
    s.propagate()
    assert len(s.emb.tiling) == 9
    preview = np.asarray(s.volume.labels)
    prompt = {1: [SlicePrompt(slice=3, points=np.array([[r, c]], float), labels=np.array([1]))]}
    direct = segment_volume(s.emb, prompt)
    assert preview.shape == (6, 600, 600) and np.array_equal(preview, np.asarray(direct.labels))
    # a tiled stack is cut at the threshold, as the tiled preview: Propagate starts from
    # the mask the user saw (the demo model cuts untiled slices on edges)
    assert not shown.edges and np.array_equal(preview[3] == 1, shown.mask)
    auto = segment_volume(s.emb, prompt, boundary="auto")  # the demo model's rule: untiled only
    assert np.array_equal(preview, np.asarray(auto.labels))
    with pytest.raises(ValueError, match="boundary='edge' cuts masks of untiled stacks only"):
        segment_volume(s.emb, prompt, boundary="edge")
    assert np.unique(preview).tolist() == [0, 1]
    assert _iou(preview == 1, sample.labels == i) >= 0.5
    assert s.commit().ids == [1]


def test_segment_everything_on_a_tiled_image(sample, demo_choice):
    """Segment everything on the 600 x 600 image runs window by window on its tiled
    embedding (what napari_sam.segment_everything gives on it) and finds most nuclei; the
    image shrunk to the demo model's 256 px input gives far fewer."""
    from napari_sam import segment_everything

    s = _session(sample, demo_choice)
    s.segment_everything()
    (labels,) = s.results.values()
    direct = segment_everything(s.emb[0], s.predictor.model, device=s.predictor.device)
    assert np.array_equal(labels[0], np.asarray(direct.labels))
    n_tiled = len(np.unique(labels)) - 1
    assert n_tiled >= 0.6 * sample.labels.max()
    assert s.status.startswith(f"Segment everything: {n_tiled} objects (in 9 tiles of 256 px)")
    s.results.clear()
    s.set_tiling(False)
    s.segment_everything()
    (labels,) = s.results.values()
    assert len(np.unique(labels)) - 1 < n_tiled / 2


def test_segment_everything_in_a_tiled_stack(demo_choice):
    """Whole stack: the slices' objects are segmented on the tiled stack embeddings (slices
    read from the image), linked and propagated; the result covers the stack's frame."""
    from napari_sam import synthetic

    sample = synthetic.nuclei_3d((4, 400, 400), seed=10_013)
    s = AnnotationSession()
    s.set_image(sample.image, name="stack")
    s.set_model(demo_choice)
    s.segment_everything(whole_stack=True)
    assert len(s.emb.tiling) == 4
    (labels,) = s.results.values()
    n = len(np.unique(labels)) - 1
    print("tiled stack:", n, "objects of", sample.labels.max())
    assert labels.shape == (4, 400, 400) and n >= 0.4 * sample.labels.max()
    assert s.status.startswith(f"Segment everything: {n} objects (in 4 tiles of 256 px)")


def test_the_first_embedding_of_an_image_says_it_is_tiled(sample, demo_choice):
    """Choosing an image and a model embeds the visible slice (preload); the status line
    then says what to do and that the image is tiled (a small image: nothing about tiles)."""
    s = _session(sample, demo_choice)
    s.preload()
    assert s.status.startswith("Click on an object in 'nuclei'")
    assert ("Embedded in tiles: 600 x 600 in 9 tiles of 256 px (overlapping by 64 px or "
            "more); untick 'Tile large images' to embed it whole.") in s.status
    s.set_image(sample.image[:300, :300], name="small")
    s.preload()
    assert s.ready([0]) and "tile" not in s.status.lower()


def test_a_tiled_session_replays_to_the_same_labels_with_its_recorded_tiling(sample,
                                                                         demo_choice,
                                                                         tmp_path):
    """A session clicked on a tiled image (a click and a refined label) replays to the same
    labels from a fresh embedding made with the tiling the file records; replayed untiled
    (as before the tiling was recorded) the masks differ, so the recorded tiling matters."""
    import napari_sam as ns
    from napari_sam.session import read_session, recorded_tiling, replay

    s = _session(sample, demo_choice)
    s.compute_embeddings()
    tiling = s.emb[0].tiling
    i, (r, c) = _nucleus_across_a_core_border(sample, tiling)
    s.add_point(0, r, c)
    s.update_preview()
    assert s.commit().ids == [1]
    s.refine, s.refine_label = True, 1
    s.add_point(0, r + 1, c)
    s.update_preview()
    assert s.commit().ids == [1]
    sess = read_session(s.save_session(tmp_path / "tiled"))
    assert recorded_tiling(sess) == tiling
    emb = ns.embed(sample.image[None], s.predictor.model, tiling=recorded_tiling(sess),
                   device="cpu")
    again = replay(sess, emb)
    assert again.notes == [] and np.array_equal(again.labels, s.labels)
    assert _iou(again.labels[0] == 1, sample.labels == i) >= 0.6
    untiled = replay(sess, ns.embed(sample.image[None], s.predictor.model, tiling=None,
                                    device="cpu"))
    assert not np.array_equal(untiled.labels, s.labels)


def test_a_click_on_a_tiled_stack_embeds_its_slice_only(demo_choice):
    """A click on a slice not embedded yet embeds the next three slices too (scrolling
    on), but on a tiled stack each slice costs all its windows: the first preview of a
    large stack waited for four slices' windows (36 model inputs here, 4 x 16 for ViT-B on
    a 3000 px stack). Now only the clicked slice of a tiled stack is embedded."""
    from napari_sam import synthetic

    sample = synthetic.nuclei_3d((6, 600, 600), seed=10_011)
    s = AnnotationSession()
    s.set_image(sample.image, name="stack")
    s.set_model(demo_choice)
    s.go_to_slice(2)
    s.add_point(2, 300, 300)
    (p,) = s.update_preview()
    assert p.z == 2 and len(s.emb.tiling) == 9
    assert s.emb.missing(range(6)) == [0, 1, 3, 4, 5]
    assert s.embedding_summary() == "1 of 6 slices embedded in 9 tiles"
    s.set_tiling(False)  # the same stack whole: the click reads three slices ahead
    s.add_point(2, 310, 310)
    s.update_preview()
    assert getattr(s.emb, "tiling", None) is None and s.emb.missing(range(6)) == [0, 1]
