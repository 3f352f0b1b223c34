"""Session files (napari_sam.session), the propagation trace (napari_sam.trace), their CLI:
`segment --prompts session.json` replays, bad files are refused with the fix and change
nothing, `report` draws the traces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_sam import session as S
from stacks import blob_stack


def operations() -> list[dict]:
    """A click with the second candidate on slice 1, a box with a negative point on slice 2,
    a propagation from slice 4 (what the dock records for such commits)."""
    click = {"slice": 1, "points": [[20.0, 20.0]], "labels": [1], "key": "points",
             "candidate": 1, "n_candidates": 3, "mask_prompt": False}
    box = {"slice": 2, "points": [[52.0, 52.0]], "labels": [0], "box": [34.0, 34.0, 56.0, 56.0],
           "key": "box:0", "candidate": 0, "n_candidates": 1, "mask_prompt": False}
    return [
        {"op": "commit", "kind": "slice", "slice": 1, "overwrite": False, "mask_label": 0,
         "objects": [click], "written": [[0, 0]], "ids": [1]},
        {"op": "commit", "kind": "slice", "slice": 2, "overwrite": False, "mask_label": 0,
         "objects": [box], "written": [[0, 0]], "ids": [2]},
        {"op": "commit", "kind": "volume", "overwrite": False,
         "prompts": {"1": [{"slice": 4, "points": [[44.0, 20.0]], "labels": [1]}]},
         "options": {"axis_kind": "z"}, "written": [[1, 0]], "ids": [3]},
    ]


def make_session(files, model) -> S.Session:
    """A session as the dock saves it, its labels made by replaying it with ``model``."""
    import napari_sam as ns

    stack = blob_stack()
    sess = S.Session(image={"path": str(files["stack"]), "name": "blobs", "shape": [6, 64, 64],
                            "hash": S.image_hash(stack)},
                     model={"name": str(files["model"]), "is_file": True},
                     operations=operations(),
                     pending={"points": [[3.0, 30.0, 40.0]], "labels": [1], "boxes": []})
    sess.labels = S.replay(sess, ns.embed(stack, model, device="cpu")).labels
    return sess


def test_session_file_round_trip_with_content_addressed_labels(files, tiny_sam, tmp_path):
    sess = make_session(files, tiny_sam)
    assert sorted(sess.objects()) == [1, 2, 3] and sess.objects()[3]["kind"] == "volume"
    path = S.write_session(sess, tmp_path / "s.json")
    (tif,) = tmp_path.glob("s.labels-*.tif")
    back = S.read_session(path)
    assert back.operations == sess.operations and back.pending == sess.pending
    assert np.array_equal(back.labels, sess.labels) and back.labels.dtype == np.uint32
    record = json.loads(path.read_text())
    assert record["version"] == S.VERSION and record["objects"]["2"]["prompts"][0]["box"]
    sess.labels = sess.labels.copy()
    sess.labels[0, 0, 0] = 9
    S.write_session(sess, path)  # a new labels TIFF; the old one is gone once the JSON names it
    (tif2,) = tmp_path.glob("s.labels-*.tif")
    assert tif2 != tif and not tif.exists()
    assert S.read_session(path).labels[0, 0, 0] == 9


def test_replay_is_deterministic_and_reports_what_another_model_changes(files, tiny_sam,
                                                                      tiny_config):
    import napari_sam as ns
    from napari_sam.models import build_sam

    sess = make_session(files, tiny_sam)
    again = S.replay(sess, ns.embed(blob_stack(), tiny_sam, device="cpu"))
    assert np.array_equal(again.labels, sess.labels) and not again.notes
    assert [o["id"] for o in again.trace["objects"]] == [3]  # the propagation, committed id
    import torch

    torch.manual_seed(5)
    other = build_sam(tiny_config)  # same architecture, other weights
    changed = S.replay(sess, ns.embed(blob_stack(), other, device="cpu"))
    diff = S.compare(sess.labels, changed.labels)
    assert {d["id"] for d in diff} >= {1, 2}
    assert any(d["status"] != "same" for d in diff)
    assert S.describe_changes(diff)


def test_replay_takes_the_progress_forms_and_shows_one_line(files, tiny_sam, capsys):
    """``replay`` follows the library's ``progress=`` convention (True: a bar counting the
    operations; a bad value refused before any work) and its result is one line in a
    notebook, not the arrays."""
    import napari_sam as ns
    from napari_sam.session_replay import ReplayResult, replay

    assert S.replay is replay and S.ReplayResult is ReplayResult  # importable from session
    sess = make_session(files, tiny_sam)
    emb = ns.embed(blob_stack(), tiny_sam, device="cpu")
    calls = []
    res = S.replay(sess, emb, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert repr(res) == ("ReplayResult(3 operations, 3 labels written, labels (6, 64, 64) "
                         "uint32; every id as recorded)")
    capsys.readouterr()
    again = S.replay(sess, emb, progress=True)
    assert np.array_equal(again.labels, res.labels)
    assert "3/3" in capsys.readouterr().err
    with pytest.raises(TypeError, match="progress must be None or False"):
        S.replay(sess, None, progress="yes")  # refused before the embeddings are read


def _write_bad(tmp_path: Path, good: Path, case: str) -> Path:
    record = json.loads(good.read_text())
    bad = good.with_name(f"bad_{case}.json")
    for f in good.parent.glob("s.labels-*.tif"):
        (bad.parent / f.name.replace("s.", f"bad_{case}.", 1)).write_bytes(f.read_bytes())
        record["labels"]["path"] = f.name.replace("s.", f"bad_{case}.", 1)
    if case == "version":
        record["version"] = 7
    elif case == "model":
        record["model"]["name"] = "vit_q"
    elif case == "newer model":  # a registry name this version does not have
        record["model"].update(name="vit_q", is_file=False)
    elif case == "outside":
        record["operations"][1]["objects"][0]["points"] = [[52.0, 90.0]]
    if case == "json":
        bad.write_text(json.dumps(record)[:-40])
    else:
        bad.write_text(json.dumps(record))
    return bad


BAD = {
    "version": ["format version 7", "reads version 1", "update napari-sam-stacks"],
    "json": ["not valid JSON", "truncated"],
    "shape": ["(6, 64, 80)", "(6, 64, 64)", "open the image it was made for"],
    "model": ["unknown model 'vit_q'", "vit_b", "--model", "no such checkpoint file"],
    "newer model": ["unknown model 'vit_q'", "no model name this version of napari-sam-stacks "
                    "knows (it knows demo, ", "made with a newer version? update napari-sam-stacks",
                    "--model"],
    "outside": ["operation 2, object 1", "col 90", "outside"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_session_files_get_clear_errors(files, tiny_sam, tmp_path, case):
    good = S.write_session(make_session(files, tiny_sam), tmp_path / "s.json")
    bad = _write_bad(tmp_path, good, case)
    before = bad.read_bytes()
    with pytest.raises(S.SessionError) as err:
        sess = S.read_session(bad)
        S.check_image(sess, (6, 64, 80) if case == "shape" else (6, 64, 64))
        S.check_model(sess)
    for words in BAD[case]:
        assert words in str(err.value), str(err.value)
    assert bad.read_bytes() == before


@pytest.mark.parametrize("case", ["version", "json", "shape", "outside"])
def test_cli_refuses_bad_session_files_before_any_work(files, tiny_sam, tmp_path, case, capsys):
    from napari_sam.cli import main

    good = S.write_session(make_session(files, tiny_sam), tmp_path / "s.json")
    bad = _write_bad(tmp_path, good, case)
    out = tmp_path / "out"
    stack = files["stack"]
    if case == "shape":  # the session of blobs.tif on a stack of another shape
        import tifffile

        stack = tmp_path / "data" / "wide.tif"
        tifffile.imwrite(stack, np.zeros((6, 64, 80), np.float32))
    code = main(["segment", str(stack), "--prompts", str(bad), "-o", str(out),
                 "--model", str(files["model"]), "--device", "cpu", "-q"])
    assert code == 2
    err = capsys.readouterr().err
    assert BAD[case][0] in err and "Traceback" not in err
    assert not out.exists()


def test_cli_replay_writes_the_session_labels_and_report_draws_the_trace(files, tiny_sam,
                                                                         tmp_path, capsys):
    import tifffile
    from PIL import Image

    from napari_sam.cli import main

    good = S.write_session(make_session(files, tiny_sam), tmp_path / "s.json")
    out = tmp_path / "out"
    assert main(["segment", str(files["stack"]), "--prompts", str(good), "-o", str(out),
                 "--model", str(files["model"]), "--device", "cpu", "-q"]) == 0
    labels = tifffile.imread(out / "blobs_labels.tif")
    assert np.array_equal(labels, S.read_session(good).labels)
    side = json.loads((out / "blobs_labels.tif.json").read_text())
    assert side["extra"]["replay"]["identical"] and side["extra"]["replay"]["same_image"]
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    png = out / "blobs_labels.tif.trace.png"
    assert str(png) in capsys.readouterr().out
    with Image.open(png) as im:
        assert im.size[0] == 900 and im.size[1] >= 150
    assert main(["report", str(tmp_path / "data")]) == 1  # no traces there: says so
    # without --model the session's own model replays it
    again = tmp_path / "again"
    assert main(["segment", str(files["stack"]), "--prompts", str(good), "-o", str(again),
                 "--device", "cpu"]) == 0
    assert "the session's (--model replays it with another)" in capsys.readouterr().err
    assert np.array_equal(tifffile.imread(again / "blobs_labels.tif"), S.read_session(good).labels)


def test_legacy_prompts_files_are_still_read(tmp_path):
    from napari_sam.batch import load_prompts

    (tmp_path / "p.csv").write_text("id,slice,row,col\n1,2,10,12\n")
    (tmp_path / "p.json").write_text(json.dumps({"objects": {"1": [{"slice": 2,
                                                                    "points": [[10, 12]]}]}}))
    for name in ("p.csv", "p.json"):
        prompts = load_prompts(tmp_path / name)
        assert prompts[""][1][0]["points"] == [[10.0, 12.0]]
        assert getattr(prompts, "session", None) is None


@pytest.fixture(scope="module")
def demo_model():
    from napari_sam.models.registry import weights_dir

    if not (weights_dir() / "demo.pt").is_file():
        pytest.skip("the bundled demo model is not installed")
    import napari_sam as ns

    return ns.load_model("demo")


def early_stop_stack():
    """A bright disc through 16 slices that is nearly invisible on slices 8 and 9, and a
    second object elsewhere."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    stack = rng.normal(30, 4, (16, 96, 96)).astype(np.float32)
    disc = (yy - 48) ** 2 + (xx - 48) ** 2 < 14 ** 2
    for z in range(16):
        stack[z][disc] += 5 if z in (8, 9) else 120
    stack[:, (yy - 20) ** 2 + (xx - 75) ** 2 < 64] += 100
    return stack


def test_object_that_stopped_early_is_flagged_on_the_right_slice(demo_model):
    import napari_sam as ns
    from napari_sam.trace import propagation_trace

    stack = early_stop_stack()
    emb = ns.embed(stack, demo_model, device="cpu")
    res = ns.segment_volume(emb, {1: [{"slice": 3, "points": [[48, 48]]}]})
    lo, hi = res.slice_range[1]
    assert lo == 0 and hi <= 8  # propagation ends at the dim slices
    trace = propagation_trace(res.labels, stack, res.scores, res.stop_reasons, {1: [3]})
    (obj,) = trace["objects"]
    early = [f for f in obj["flags"] if f["kind"] == "stopped_early"]
    assert [f["slice"] for f in early] == [10]  # the first slice where the disc is back
    fix = early[0]["fix"]
    assert fix["slice"] == 10 and np.allclose(fix["point"], [48, 48], atol=2)
    assert "add a point on slice 10" in early[0]["text"]
    # the fix works: a point there carries the object to the end of the stack
    fixed = ns.segment_volume(emb, {1: [{"slice": 3, "points": [[48, 48]]},
                                        {"slice": 10, "points": [fix["point"]]}]})
    assert fixed.slice_range[1][1] == 15


def test_sessions_with_sam2_propagation_are_refused_clearly_before_any_work(files, tiny_sam,
                                                                            tmp_path, capsys):
    """A session the GUI wrote with a SAM 2.1 model (a propagation with SAM 2 memory) is not
    replayed: the API and the CLI say so, name the operation and the way forward, and write
    nothing."""
    import napari_sam as ns
    from napari_sam.cli import main

    sess = make_session(files, tiny_sam)
    sess.operations[2]["options"] = {"method": "sam2", "stop_after_absent": 2}
    with pytest.raises(S.SessionError) as err:
        S.replay(sess, ns.embed(blob_stack(), tiny_sam, device="cpu"))
    assert "operation 3 of this session propagated with SAM 2 memory" in str(err.value)
    assert "--method sam2" in str(err.value)
    path = S.write_session(sess, tmp_path / "s2.json")
    before = path.read_bytes()
    out = tmp_path / "out"
    code = main(["segment", str(files["stack"]), "--prompts", str(path), "-o", str(out),
                 "--model", str(files["model"]), "--device", "cpu", "-q"])
    text = capsys.readouterr().err
    assert code != 0 and "propagated with SAM 2 memory" in text and "Traceback" not in text
    assert not (out / "blobs_labels.tif").exists()
    assert path.read_bytes() == before


def test_cli_replay_says_a_changed_object_was_likely_painted_by_hand(files, tiny_sam, tmp_path,
                                                                      capsys):
    """A session whose labels were corrected with the brush (painting is not replayed): the
    replay said "object 1: changed (IoU 0.98 ...)" as if the model had changed (helper
    walk-through, session 31); with the same image and model it now says why."""
    import napari_sam as ns
    from napari_sam.cli import main

    sess = make_session(files, tiny_sam)
    # made with the checkpoint the command loads (tiny_sam is its in-memory twin)
    sess.model = {**sess.model, "id": ns.load_model(files["model"]).model_id}
    painted = np.array(sess.labels, copy=True)
    ids = [i for i in np.unique(painted) if i]
    z, r, c = np.argwhere(painted == ids[0])[0]
    painted[z, r:r + 2, c:c + 2] = 0  # erased by hand
    sess.labels = painted
    path = S.write_session(sess, tmp_path / "s.json")
    assert main(["segment", str(files["stack"]), "--prompts", str(path), "-o",
                 str(tmp_path / "out"), "--model", str(files["model"]), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"object {ids[0]}: changed" in err
    assert ("the same image, model, device and precision: a changed object is most likely "
            "one corrected by hand") in err
    sess.model = {**sess.model, "id": "file:000000000000"}  # another model: said so
    S.write_session(sess, path)
    assert main(["segment", str(files["stack"]), "--prompts", str(path), "-o",
                 str(tmp_path / "out2"), "--model", str(files["model"]), "--device", "cpu"]) == 0
    assert "(replayed with another model: the model decodes" in capsys.readouterr().err
    # the reviewer's catch: another device or precision was blamed on painting
    sess.model = {**sess.model, "id": ns.load_model(files["model"]).model_id,
                  "device": "cuda", "precision": "fp16"}
    S.write_session(sess, path)
    assert main(["segment", str(files["stack"]), "--prompts", str(path), "-o",
                 str(tmp_path / "out3"), "--model", str(files["model"]), "--device", "cpu",
                 "--precision", "fp32"]) == 0
    err = capsys.readouterr().err
    assert "precision fp32 (the session's: fp16); device cpu (the session's: cuda)" in err
    assert "most likely one corrected by hand" not in err
