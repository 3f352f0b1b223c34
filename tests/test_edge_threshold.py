"""Edge-aligned mask thresholds (napari_sam.edge_threshold): the rule itself on scenes whose
answer is known, the predictor's boundary option, the model metadata that recommends it, and
its quality with the demo model on real and synthetic nuclei and on membrane-stained cells."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.edge_threshold import (
    EDGE_THRESHOLDS,
    boundary_strength,
    edge_aligned_masks,
    edge_map,
)
from napari_sam.models.registry import load_model, mask_boundary, where

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-nuclei-3d"


def _disc_scene(radius=20.0, size=96):
    """A bright disc of ``radius`` (a sharp edge) and logits that fall off linearly from its
    centre, reaching 0 at 0.7 * radius: the model's own threshold cuts it too small."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    image = np.where(r <= radius, 200.0, 20.0)
    logits = (0.7 * radius - r) / (0.3 * radius / 1.0)  # logit -1 exactly at the radius
    return image, logits[None].astype(np.float32), r <= radius


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_the_mask_moves_to_the_image_edge_the_logits_fall_short_of():
    image, logits, truth = _disc_scene()
    masks, chosen = edge_aligned_masks(logits, edge_map(image))
    assert chosen.tolist() == [-1.0]  # the contour on the disc's edge
    assert _iou(masks[0], truth) > 0.97 > _iou(logits[0] > 0, truth) + 0.4


def test_without_edges_the_model_threshold_stays():
    """A flat image has no edge anywhere: every boundary ties, the tie goes to 0."""
    _, logits, _ = _disc_scene()
    masks, chosen = edge_aligned_masks(logits, edge_map(np.full((96, 96), 7.0)))
    assert chosen.tolist() == [0.0]
    assert np.array_equal(masks[0], logits[0] > 0)


def test_an_empty_candidate_stays_empty_and_at_zero():
    masks, chosen = edge_aligned_masks(np.full((2, 32, 32), -5.0, np.float32),
                                       edge_map(np.random.default_rng(0).random((32, 32))))
    assert not masks.any() and chosen.tolist() == [0.0, 0.0]


def test_the_boxed_computation_equals_the_whole_image_one():
    """The masks are chosen inside the largest candidate's box; the result is the one the
    whole image gives (also for a mask touching the image border)."""
    rng = np.random.default_rng(1)
    image = rng.random((80, 90)) * 50
    image[10:50, 0:40] += 100  # an object on the left border
    yy, xx = np.mgrid[:80, :90]
    logits = np.stack([2.0 - np.hypot(yy - 30, xx - 5) / 8, 1.5 - np.hypot(yy - 60, xx - 60) / 6])
    edges = edge_map(image)
    masks, chosen = edge_aligned_masks(logits, edges)
    for c, one in enumerate(logits):
        order = sorted(EDGE_THRESHOLDS, key=abs)
        strengths = [boundary_strength(one > t, edges) for t in order]
        want = order[int(np.argmax(strengths))]
        assert chosen[c] == want and np.array_equal(masks[c], one > want)


def test_a_mask_empty_or_without_boundary_at_zero_stays_as_the_model_cut_it():
    """Where every logit is below 0 (the model finds nothing) the mask stays empty, although
    lower thresholds would draw one on an edge; a mask covering the whole image at 0 (no
    boundary inside it) stays whole."""
    image, logits, _ = _disc_scene()
    edges = edge_map(image)
    nothing = logits - logits.max() - 0.1  # below 0 everywhere, above -1 near the centre
    assert (nothing > -1).any()
    masks, chosen = edge_aligned_masks(nothing, edges)
    assert not masks.any() and chosen.tolist() == [0.0]
    everything = np.full_like(logits, 0.5)
    everything[0, 40:56, 40:56] = 2.0  # a contour at 1 lies on no edge, but exists
    masks, chosen = edge_aligned_masks(everything, edges)
    assert masks.all() and chosen.tolist() == [0.0]


def test_edge_map_ignores_the_dtype_range_and_nan_and_averages_colour():
    image, _, _ = _disc_scene()
    base = edge_map(image.astype(np.uint8))
    np.testing.assert_allclose(edge_map(image * 1000 + 1e6), base, atol=1e-5)
    with_nan = image.copy()
    with_nan[0, 0] = np.nan
    assert np.isfinite(edge_map(with_nan)).all()
    with_inf = image.copy()  # +inf is white (as the model sees it), -inf black
    with_inf[40:56, 40:56], with_inf[:4, :4] = np.inf, -np.inf  # inside / outside the disc
    np.testing.assert_allclose(edge_map(with_inf), base, atol=1e-5)
    np.testing.assert_allclose(edge_map(np.stack([image] * 3, -1)), base, atol=1e-5)
    alpha = np.where(image > 100, 0.0, 255.0)  # an alpha channel with edges of its own
    np.testing.assert_allclose(edge_map(np.stack([image] * 3 + [alpha], -1)), base, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(Y, X\) or \(Y, X, C\) image"):
        edge_map(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="do not match the edge map"):
        edge_aligned_masks(np.zeros((1, 10, 10)), base)


def test_mask_boundary_metadata_is_read_and_checked():
    assert mask_boundary({}) == "threshold"
    assert mask_boundary({"mask_boundary": "edge"}) == "edge"
    with pytest.raises(ValueError, match="/m/x.json: the sidecar's 'mask_boundary' must be one "
                                         "of 'threshold', 'edge', got 'edges'"):
        mask_boundary({"mask_boundary": "edges"}, "/m/x.json")


def test_demo_model_recommends_edges_and_a_model_trained_from_it_keeps_that(tmp_path):
    from napari_sam.training.checkpoint import save_checkpoint

    demo = load_model("demo")
    assert demo.mask_boundary == "edge"
    assert load_model(save_checkpoint(demo, tmp_path / "tuned.pt", {})).mask_boundary == "edge"
    src = where("demo")  # the same weights without the recommendation: SAM's rule
    shutil.copy(src, tmp_path / src.name)
    meta = json.loads(src.with_suffix(".json").read_text())
    meta.pop("mask_boundary")
    (tmp_path / src.with_suffix(".json").name).write_text(json.dumps(meta))
    assert load_model(tmp_path / src.name).mask_boundary == "threshold"


def test_predictor_cuts_on_edges_where_the_model_asks_and_the_pixels_are_known(tiny_sam):
    from napari_sam.synthetic import nuclei_2d

    sample = nuclei_2d((160, 200), seed=3)
    rows, cols = np.nonzero(sample.labels == 2)
    click = dict(points=[[np.median(rows), np.median(cols)]], labels=[1])
    pred = ns.Predictor("demo", precision="fp32")
    emb = pred.set_image(sample.image)
    masks, scores, logits = pred.predict(**click)  # "auto": the demo model asks for edges
    at_zero = pred.predict(**click, boundary="threshold")
    edge = pred.predict(**click, boundary="edge")
    assert np.array_equal(masks, edge[0]) and not np.array_equal(masks, at_zero[0])
    assert np.array_equal(scores, at_zero[1]) and np.array_equal(logits, at_zero[2])
    up = pred.upsample_logits(torch.as_tensor(logits), emb)
    assert np.array_equal(masks, edge_aligned_masks(up, edge_map(sample.image))[0])
    pred.set_embedding(emb)  # pixels unknown: the model's threshold, unless image= is given
    assert np.array_equal(pred.predict(**click)[0], at_zero[0])
    assert np.array_equal(pred.predict(**click, image=sample.image)[0], masks)
    with pytest.raises(ValueError, match="boundary='edge' needs the image's pixels"):
        pred.predict(**click, boundary="edge")
    with pytest.raises(ValueError, match="is not one of 'auto', 'threshold', 'edge'"):
        pred.predict(**click, boundary="edges")
    with pytest.raises(ValueError, match=r"image \(10, 10\) is not the embedded image"):
        pred.predict(**click, boundary="edge", image=np.zeros((10, 10)))
    sam = ns.Predictor(tiny_sam, precision="fp32")  # SAM's rule for SAM's weights
    sam.set_image(sample.image)
    assert np.array_equal(sam.predict(**click)[0], sam.predict(**click, boundary="threshold")[0])


def test_an_image_refilled_in_place_is_cut_on_its_own_edges():
    """A video loop writes each frame into one buffer and calls set_image(buffer): every
    frame's masks are cut on that frame's edges, as a fresh predictor cuts them."""
    from napari_sam.synthetic import nuclei_2d

    frames = [nuclei_2d((128, 128), seed=s).image.astype(np.float32) for s in (3, 4)]
    buf = frames[0].copy()
    pred = ns.Predictor("demo", precision="fp32")
    pred.set_image(buf)
    pred.predict(points=[[64, 64]])
    buf[:] = frames[1]
    pred.set_image(buf)
    fresh = ns.Predictor("demo", precision="fp32")
    fresh.set_image(frames[1].copy())
    assert np.array_equal(pred.predict(points=[[64, 64]])[0],
                          fresh.predict(points=[[64, 64]])[0])


def test_slice_edges_names_an_unknown_boundary():
    from napari_sam.annotation import slice_edges

    pred = ns.Predictor("demo", precision="fp32")
    with pytest.raises(ValueError, match="boundary='edges' is not one of 'auto'"):
        slice_edges(pred, np.zeros((1, 8, 8)), 0, "edges")
    assert slice_edges(pred, np.zeros((1, 8, 8)), 0, "threshold") is None


def test_a_sam2_predictor_refuses_edge():
    from napari_sam.models.sam2.checkpoint import SAM2_CONFIGS
    from napari_sam.models.sam2.model import Sam2Model

    pred = ns.Predictor(Sam2Model(SAM2_CONFIGS["sam2.1_hiera_tiny"]), precision="fp32")
    with pytest.raises(ValueError, match="boundary='edge' cuts SAM 1 masks only"):
        pred.predict(points=[[10, 10]], boundary="edge")


def test_a_tiled_image_refuses_edge_and_keeps_the_threshold(tiny_sam):
    pred = ns.Predictor(tiny_sam, precision="fp32")
    pred.set_image(np.random.default_rng(0).random((600, 300)), tiling=True)
    assert pred.tiled is not None
    assert pred.predict(points=[[100, 100]])[0].shape[1:] == (600, 300)
    with pytest.raises(ValueError, match="cuts masks of untiled images only"):
        pred.predict(points=[[100, 100]], boundary="edge")


def _click_ious(pred, image, truths, boundary):
    from scipy import ndimage as ndi

    pred.set_image(image)
    out = []
    for g in truths:
        dist = ndi.distance_transform_edt(g)
        pt = np.array([np.unravel_index(int(dist.argmax()), g.shape)], np.float64)
        masks, scores, _ = pred.predict(points=pt, labels=np.ones(1), boundary=boundary)
        out.append(_iou(masks[int(np.argmax(scores))], g))
    return float(np.mean(out))


@pytest.mark.slow
def test_edges_lift_the_demo_model_on_real_and_synthetic_nuclei_and_keep_cells():
    """One click per object, the demo model (fp32): real nuclei (widest slice of each of the
    development stack's 51, each embedded alone: run 37 measures 0.777 -> 0.808; run 36, the
    model the rule was chosen with, 0.73 -> 0.77 on the stack's embedding), synthetic nuclei
    (seed 10000: 0.891 -> 0.908) gain; membrane-stained cells, whose boundary is a ridge, lose
    at most 0.02 (run 37: 0.648 -> 0.653; run 36: -0.016)."""
    from napari_sam import synthetic as syn

    pred = ns.Predictor("demo", precision="fp32")
    got = {}
    for name, gen in (("nuclei", syn.nuclei_2d), ("cells", syn.cells_membrane_2d)):
        s = gen((256, 256), seed=10000)
        ids = [i for i in np.unique(s.labels)[1:] if (s.labels == i).sum() >= 30][:25]
        truths = [s.labels == i for i in ids]
        got[name] = [_click_ious(pred, s.image, truths, b) for b in ("threshold", "edge")]
    if REAL.is_dir():
        import tifffile

        img = tifffile.imread(REAL / "image.tif")
        gt = tifffile.imread(REAL / "labels.tif").astype(np.int32)
        rows = []
        for i in np.unique(gt)[1:]:
            z = int((gt == i).sum((1, 2)).argmax())
            rows.append([_click_ious(pred, img[z], [gt[z] == i], b)
                         for b in ("threshold", "edge")])
        got["real"] = list(np.mean(rows, 0))
    else:
        print(f"real nuclei not measured: the development stack is not here ({REAL})")
    print({k: [round(v, 3) for v in vs] for k, vs in got.items()})
    assert got["nuclei"][1] >= got["nuclei"][0] + 0.01
    assert got["cells"][1] >= got["cells"][0] - 0.02
    if "real" in got:
        assert got["real"][1] >= got["real"][0] + 0.02


@pytest.fixture(scope="module")
def demo_volume():
    """A small synthetic nuclei volume, its demo-model embeddings and a click on the widest
    slice of one nucleus: ``(sample, emb, object id, slice, (row, col))``."""
    from scipy import ndimage as ndi

    from napari_sam import synthetic as syn

    sample = syn.nuclei_3d((12, 128, 128), seed=10_001)
    emb = ns.embed(sample.image, load_model("demo"), precision="fp32")
    areas = {int(i): (sample.labels == i).sum((1, 2)) for i in np.unique(sample.labels)[1:]}
    i = max(areas, key=lambda k: areas[k].max())
    z = int(areas[i].argmax())
    dist = ndi.distance_transform_edt(sample.labels[z] == i)
    return sample, emb, i, z, np.unravel_index(int(dist.argmax()), dist.shape)


def test_propagation_cuts_the_annotated_slice_on_edges_when_asked(demo_volume):
    """segment_volume cuts its annotated slice at the threshold by default, on edges with
    boundary="auto" (the demo model's rule) or "edge", as predict cuts it."""
    from napari_sam.volume import SlicePrompt

    sample, emb, i, z, rc = demo_volume
    prompt = {1: [SlicePrompt(slice=z, points=np.array([rc], float), labels=np.ones(1))]}
    pred = emb.predictor
    pred.set_embedding(emb[z])
    click = dict(points=np.array([rc], float), labels=np.ones(1))
    m, sc, _ = pred.predict(**click, image=sample.image[z])
    want_edge = m[int(np.argmax(sc))]
    m, sc, _ = pred.predict(**click, boundary="threshold")
    want_zero = m[int(np.argmax(sc))]
    assert not np.array_equal(want_edge, want_zero)
    for boundary in ("auto", "edge"):
        edge = ns.segment_volume(emb, prompt, boundary=boundary)
        assert np.array_equal(np.asarray(edge.labels)[z] == 1, want_edge)
    zero = ns.segment_volume(emb, prompt)
    assert np.array_equal(np.asarray(zero.labels)[z] == 1, want_zero)
    with pytest.raises(ValueError, match="boundary='edges' is not one of 'auto'"):
        ns.segment_volume(emb, prompt, boundary="edges")


def test_the_dock_propagates_with_the_rule_the_user_set_and_replay_follows(demo_volume,
                                                                         tmp_path):
    """In the annotation session (the dock's logic), the demo model: Propagate cuts its
    annotated slice at the threshold by default (not the edge-cut preview: seeds cut on
    edges leak more, docs/models.md) and records nothing; with mask_boundary="edge" set by
    the user it starts from the mask the preview showed and records the rule. A session
    replays both to the labels committed."""
    from napari_sam.annotate import AnnotationSession, ModelChoice
    from napari_sam.session import read_session, replay

    sample, emb, i, z, rc = demo_volume
    s = AnnotationSession()
    s.set_image(sample.image, name="nuclei")
    choice = ModelChoice("demo", "demo")
    s.precision = "fp32"
    s.models.put(choice, "auto", emb.predictor, "fp32")
    s.set_model(choice)
    s.go_to_slice(z)
    s.overwrite = True
    seeds = []
    for rule in ("auto", "edge"):
        s.mask_boundary = rule
        s.add_point(z, *rc)
        shown = s.update_preview()[0].mask.copy()
        s.propagate()
        seeds.append(s.volume.labels[z] > 0)
        assert np.array_equal(seeds[-1], shown) == (rule == "edge")
        s.commit()
    assert not np.array_equal(*seeds)
    path = s.save_session(tmp_path / "vol")
    sess = read_session(path)
    assert [op["options"].get("boundary") for op in sess.operations] == [None, "edge"]
    again = replay(sess, ns.embed(sample.image, load_model("demo"), precision="fp32"))
    assert np.array_equal(again.labels, s.labels)


def test_each_click_s_preview_is_the_annotated_slice_propagation_starts_from(monkeypatch):
    """One click at each nucleus's centroid (fractional pixels) on one slice, decoded
    together at the default precision (bfloat16 on CPUs that have it): the dock's previews
    (decode_slice) are the masks segment_volume seeds its objects with, on every pixel one
    object claims. Both decode the points as float32 (propagation used float64: in a
    reviewer's one-thread run the logits differed by bfloat16 rounding and a pixel near a
    candidate threshold flipped; this run does not show that flip without the change)."""
    from napari_sam import synthetic as syn
    from napari_sam.annotate.prompt_groups import DrawnPrompts
    from napari_sam.annotation import decode_slice, slice_edges
    from napari_sam.volume.propagator import Propagator

    sample, z = syn.nuclei_3d((6, 96, 96), seed=10_001), 2
    emb = ns.embed(sample.image, load_model("demo"))
    pred = emb.predictor
    drawn = []
    for i in [int(v) for v in np.unique(sample.labels[z])[1:]]:
        rows, cols = np.nonzero(sample.labels[z] == i)
        drawn.append(DrawnPrompts(np.array([[rows.mean(), cols.mean()]]), np.array([1])))
    shown = decode_slice(pred, emb[z], z, list(enumerate(drawn)), None,
                         slice_edges(pred, emb.stack, z))
    seeds, real = [], Propagator._seed  # the annotated slice's masks, before the labels

    def seed(self, z, ks, masks, *rest):
        seeds.append(masks.copy())
        return real(self, z, ks, masks, *rest)

    monkeypatch.setattr(Propagator, "_seed", seed)
    ns.segment_volume(emb, {k + 1: [d.to_slice_prompt(z)] for k, d in enumerate(drawn)},
                      max_slices=0, boundary="auto")
    (masks,) = seeds  # exclusive: a pixel two masks claim goes to one of them
    claims = np.sum([p.mask for p in shown], 0)
    differ = [int(((p.mask != m) & (claims <= 1)).sum()) for p, m in zip(shown, masks)]
    assert len(differ) >= 5 and not any(differ), differ
