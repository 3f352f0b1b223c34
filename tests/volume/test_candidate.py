"""``SlicePrompt.candidate``: which of a single click's three masks seeds an object on its
slice (the dock's Shift+M choice), how it is checked, recorded and replayed."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.volume import SlicePrompt, segment_volume
from stacks import blob_stack


@pytest.fixture
def blob_embeddings(tiny_sam):
    from napari_sam import embed

    emb = embed(blob_stack(), tiny_sam, device="cpu", precision="fp32")
    return emb.predictor, emb


def test_each_candidate_seeds_its_own_mask_and_none_keeps_the_best(blob_embeddings):
    pred, emb = blob_embeddings
    out = pred.predict_batch(embedding=emb[3], points=np.array([[[20.0, 20.0]]], np.float32),
                             labels=np.ones((1, 1), np.int64), multimask=True)
    masks, scores = out.masks[0].cpu().numpy(), out.scores[0].cpu().numpy()
    assert masks.shape[0] == 3 and len({m.tobytes() for m in masks}) == 3
    for c in (None, 0, 1, 2):
        res = segment_volume(emb, {1: SlicePrompt(3, points=[[20, 20]], candidate=c)},
                             boundary="threshold")
        want = masks[int(np.argmax(scores)) if c is None else c]
        got = res.labels[3] == 1
        inter, union = (got & want).sum(), (got | want).sum()
        assert inter / union >= 0.99, (c, inter / union)


@pytest.mark.parametrize(("prompt", "message"), [
    ({"slice": 3, "points": [[20, 20]], "candidate": 3}, "must be 0, 1 or 2"),
    ({"slice": 3, "points": [[20, 20]], "candidate": -1}, "must be 0, 1 or 2"),
    ({"slice": 3, "points": [[20, 20]], "candidate": 1.0}, "must be 0, 1 or 2"),
    ({"slice": 3, "points": [[20, 20]], "candidate": True}, "must be 0, 1 or 2"),
    ({"slice": 3, "points": [[20, 20], [22, 22]], "candidate": 1}, r"2 points \(2 positive"),
    ({"slice": 3, "box": [10, 10, 30, 30], "candidate": 0}, "a box"),
    ({"slice": 3, "points": [[20, 20]], "box": [10, 10, 30, 30], "candidate": 0}, "a box"),
])
def test_a_candidate_on_a_prompt_that_has_one_mask_is_refused(blob_embeddings, prompt, message):
    _, emb = blob_embeddings
    with pytest.raises(ValueError, match=message):
        segment_volume(emb, {1: [prompt]})


def test_candidate_conflicts_and_stops_are_refused():
    from napari_sam.volume.annotations import normalize_prompts

    shape = (6, 64, 64)
    with pytest.raises(ValueError, match=r"two different candidates \(0, 1\)"):
        normalize_prompts({1: [SlicePrompt(2, points=[[30, 30]], candidate=0),
                               SlicePrompt(2, points=[[3, 3]], candidate=1)]}, shape)
    with pytest.raises(ValueError, match="stop marker carries no points, box, mask or candidate"):
        normalize_prompts({1: [SlicePrompt(2, stop=True, candidate=0),
                               SlicePrompt(1, points=[[3, 3]])]}, shape)
    with pytest.raises(ValueError, match=r"1 point \(0 positive\)"):
        normalize_prompts({1: [SlicePrompt(2, points=[[3, 3]], labels=[0], candidate=0),
                               SlicePrompt(1, points=[[3, 3]])]}, shape)
    # SAM 2 memory propagation takes it too (tests/test_sam2_volume.py)
    assert normalize_prompts({1: SlicePrompt(2, points=[[3, 3]], candidate=2)}, shape,
                             "sam2")[0].annotations[2].candidate == 2
    # one click, two candidates: two objects (the part and the whole), not the same prompts
    objs = normalize_prompts({1: SlicePrompt(2, points=[[3, 3]], candidate=0),
                              2: SlicePrompt(2, points=[[3, 3]], candidate=2)}, shape)
    assert [o.annotations[2].candidate for o in objs] == [0, 2]
    # ... but the best scoring (None) may be either of them: refused, as identical clicks are
    for other in (0, None):
        with pytest.raises(ValueError, match="objects 1 and 2 have the same prompts on slice 2"):
            normalize_prompts({1: SlicePrompt(2, points=[[3, 3]]),
                               2: SlicePrompt(2, points=[[3, 3]], candidate=other)}, shape)
    with pytest.raises(ValueError, match="objects 1 and 2 have the same prompts"):
        normalize_prompts({1: SlicePrompt(2, points=[[3, 3]], candidate=1),
                           2: SlicePrompt(2, points=[[3, 3]], candidate=1)}, shape)


def test_the_session_record_keeps_the_candidate_and_checks_it():
    from napari_sam.session import Session, to_dict, volume_operation
    from napari_sam.session_checks import SessionError, check_record

    op = volume_operation({1: [SlicePrompt(3, points=np.array([[20.0, 20.0]]),
                                           labels=np.array([1]), candidate=2),
                               SlicePrompt(5, points=np.array([[20.0, 21.0]]),
                                           labels=np.array([1]))]},
                          {"axis_kind": "z"}, [(1, 0)], overwrite=False, ids=[1])
    assert op["prompts"]["1"][0]["candidate"] == 2 and "candidate" not in op["prompts"]["1"][1]
    session = Session(image={"path": "blobs.tif", "name": "blobs", "shape": [6, 64, 64]},
                      model={"name": "vit_b_lm", "precision": "fp32"}, operations=[op],
                      pending={"points": [], "labels": [], "boxes": []})
    record = to_dict(session)
    check_record(record, "s.json")
    record["operations"][0]["prompts"]["1"][0]["candidate"] = 5
    with pytest.raises(SessionError, match="object 1, slice 3: 'candidate' must be 0, 1 or 2"):
        check_record(record, "s.json")


@pytest.mark.parametrize(("prompts", "message"), [
    ([{"slice": 3, "points": [[20.0, 20.0], [22.0, 22.0]], "labels": [1, 1], "candidate": 1}],
     "slice 3: 'candidate' belongs to a single click"),
    ([{"slice": 3, "points": [[20.0, 20.0]], "labels": [0], "candidate": 1}],
     "belongs to a single click"),
    ([{"slice": 3, "box": [10.0, 10.0, 30.0, 30.0], "candidate": 0}], "belongs to a single click"),
    ([{"slice": 3, "points": [[20.0, 20.0]], "labels": [1], "candidate": 0},
      {"slice": 3, "points": [[30.0, 30.0]], "labels": [1]}], "no other prompt of the object"),
])
def test_a_session_candidate_on_anything_but_a_single_click_is_refused_before_work(prompts,
                                                                                  message):
    from napari_sam.session import Session, to_dict
    from napari_sam.session_checks import SessionError, check_record

    op = {"op": "commit", "kind": "volume", "overwrite": False, "prompts": {"1": prompts},
          "options": {"axis_kind": "z"}, "written": [[1, 0]], "ids": [1]}
    session = Session(image={"path": "blobs.tif", "name": "blobs", "shape": [6, 64, 64]},
                      model={"name": "vit_b_lm", "precision": "fp32"}, operations=[op],
                      pending={"points": [], "labels": [], "boxes": []})
    with pytest.raises(SessionError, match=message):
        check_record(to_dict(session), "s.json")


# ----------------------------------------------------------------------------- prompts files


def test_prompts_files_take_a_candidate(tmp_path):
    """CSV column and JSON key ``candidate``: read as a whole number 0-2 on a single click."""
    from napari_sam import batch

    csv = tmp_path / "p.csv"
    csv.write_text("id,z,y,x,candidate\n1,3,20,20,2\n2,3,40,40,\n")
    got = batch.prompts_for(batch.load_prompts(csv), tmp_path / "a.tif")
    assert got == {1: [{"slice": 3, "points": [[20.0, 20.0]], "labels": [1], "candidate": 2}],
                   2: [{"slice": 3, "points": [[40.0, 40.0]], "labels": [1]}]}
    js = tmp_path / "p.json"
    js.write_text('{"1": [{"slice": 3, "points": [[20, 20]], "candidate": 0}]}')
    assert batch.prompts_for(batch.load_prompts(js), tmp_path / "a.tif")[1][0]["candidate"] == 0


@pytest.mark.parametrize(("text", "message"), [
    ("id,slice,row,col,candidate\n1,3,20,20,3\n", r"line 2: 'candidate' must be 0, 1 or 2"),
    ("id,slice,row,col,candidate\n1,3,20,20,-1\n", r"line 2: 'candidate' must be 0, 1 or 2"),
    ("id,slice,row,col,candidate\n1,3,20,20,1.5\n", r"line 2: 'candidate' must be 0, 1 or 2"),
    ("id,slice,row,col,candidate\n1,3,20,20,best\n", r"line 2: 'candidate' must be 0, 1 or 2"),
    ("id,slice,row,col,label,candidate\n1,3,20,20,0,1\n",
     r"line 2: 'candidate' belongs to a single click"),
    ("id,slice,row0,col0,row1,col1,candidate\n1,3,1,1,9,9,1\n",
     r"line 2: 'candidate' belongs to a single click"),
    ('{"1": [{"slice": 3, "points": [[20, 20], [30, 30]], "candidate": 1}]}',
     r"object 1, prompt 1: 'candidate' belongs to a single click"),
    ('{"1": [{"slice": 3, "points": [[20, 20]], "candidate": true}]}',
     r"'candidate' must be 0, 1 or 2"),
])
def test_a_prompts_file_candidate_that_picks_nothing_names_its_line(tmp_path, text, message):
    from napari_sam import batch

    p = tmp_path / ("p.json" if text.startswith("{") else "p.csv")
    p.write_text(text)
    with pytest.raises(batch.BatchError, match=message):
        batch.load_prompts(p)


def test_segment_keeps_the_candidate_of_a_prompts_file(tmp_path, files, offline_cli, monkeypatch,
                                                       capsys):
    """``napari-sam segment`` seeds the object with the prompts file's candidate mask (the
    predictor's own candidate on the CLI's embedding), and refuses, before any embedding, a
    candidate that shares its slice with another prompt of its object (CSV line named)."""
    import tifffile

    from cli_runner import cli, error_line
    from napari_sam import volume
    from spy import spy

    # batch imports segment_volume when it runs
    calls = spy(monkeypatch, volume, "segment_volume", lambda emb, prompts, **kw: emb)
    got = {}
    for c in ("", "0", "2"):
        p = tmp_path / f"c{c or 'best'}.csv"
        p.write_text(f"id,slice,row,col,candidate\n1,3,20,20,{c}\n")
        out = tmp_path / f"out-{c or 'best'}"
        rc, _, err = cli(["segment", files["stack"], "-o", out, "-p", p, "--model",
                          files["model"], "--iou-threshold", "0", "--min-area", "0", "-q"],
                         capsys)
        assert rc == 0, err
        got[c] = tifffile.imread(out / "blobs_labels.tif")[3] == 1
    emb = calls[0]
    pred = emb.predictor.predict_batch(embedding=emb[3],
                                       points=np.array([[[20.0, 20.0]]], np.float32),
                                       labels=np.ones((1, 1), np.int64), multimask=True)
    masks, scores = pred.masks[0].cpu().numpy(), pred.scores[0].cpu().numpy()
    assert len({masks[0].tobytes(), masks[2].tobytes()}) == 2  # the choice changes the mask
    for c, want in (("", masks[int(np.argmax(scores))]), ("0", masks[0]), ("2", masks[2])):
        inter, union = (got[c] & want).sum(), (got[c] | want).sum()
        assert union and inter / union >= 0.99, (c, inter / union)
    n_calls = len(calls)
    p = tmp_path / "two.csv"
    p.write_text("id,slice,row,col,candidate\n1,3,20,20,1\n1,3,30,30,\n")
    rc, _, err = cli(["segment", files["stack"], "-o", tmp_path / "two", "-p", p, "--model",
                      files["model"], "-q"], capsys)
    assert rc == 2 and len(calls) == n_calls, err
    line = error_line(err)
    assert "two.csv, line 2: object 1 of blobs.tif, slice 3: 'candidate' belongs" in line
    assert "1 other prompt of the object on its slice" in line
