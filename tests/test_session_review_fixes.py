"""Review fixes of napari_sam.session: a save removes only the label TIFFs the session wrote,
malformed session files are refused by ``read_session`` (and by the CLI, exit 2) naming the
file, the entry and what is expected, ``compare`` takes None for a side without labels, and
the Python snippet of docs/sessions.md replays as the CLI does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from napari_sam import session as S
from stacks import blob_stack
from test_session import make_session, operations

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sessions.md"


def small_session(labels: np.ndarray | None = None) -> S.Session:
    """A session of three commits on a (6, 64, 64) stack, as the dock records it."""
    return S.Session(image={"path": "blobs.tif", "name": "blobs", "shape": [6, 64, 64]},
                     model={"name": "vit_b_lm", "precision": "fp32"},
                     settings={"axis_kind": "z", "overwrite": False, "store": None,
                               "tiling": None},
                     operations=operations(), labels=labels,
                     pending={"points": [[3.0, 30.0, 40.0]], "labels": [1], "boxes": []})


# ---------------------------------------------------------------- 1: saves remove only their own
def test_saving_removes_only_the_label_tiffs_the_session_wrote(tmp_path):
    import tifffile

    mine = {name: np.full((6, 64, 64), 7, np.uint16) for name in (
        "s.labels-manual.tif", "s.base-old.tif", "s.labels-0123456789ab.tif")}
    for name, arr in mine.items():  # the user's files, named like the session's TIFFs
        tifffile.imwrite(tmp_path / name, arr)
    labels = np.zeros((6, 64, 64), np.uint32)
    labels[1, 10:20, 10:20] = 1
    path = S.write_session(small_session(labels), tmp_path / "s.json")
    first = json.loads(path.read_text())["labels"]["path"]
    labels = labels.copy()
    labels[2, 30:40, 30:40] = 2
    S.write_session(small_session(labels), path)  # the second save supersedes the first TIFF
    second = json.loads(path.read_text())["labels"]["path"]
    assert first != second and not (tmp_path / first).exists()
    assert sorted(p.name for p in tmp_path.glob("s.*.tif")) == sorted([*mine, second])
    for name, arr in mine.items():
        assert np.array_equal(tifffile.imread(tmp_path / name), arr)
    assert np.array_equal(S.read_session(path).labels, labels)


def test_saving_over_a_broken_session_file_removes_nothing(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "s.labels-manual.tif", np.ones((2, 4, 4), np.uint8))
    (tmp_path / "s.json").write_text('{"format": "napari-sam-session", "labels": {"pa')
    labels = np.zeros((6, 64, 64), np.uint32)
    path = S.write_session(small_session(labels), tmp_path / "s.json")
    own = json.loads(path.read_text())["labels"]["path"]
    assert sorted(p.name for p in tmp_path.glob("s.*.tif")) == sorted(
        ["s.labels-manual.tif", own])


# ---------------------------------------------------------------- 2: malformed files refused
def _volume_key(rec, key):
    rec["operations"][2]["prompts"] = {key: rec["operations"][2]["prompts"]["1"]}
    rec["operations"][2]["written"] = [[int(key) if key.isdigit() else 1, 0]]


BAD = {  # case: (change to a good record, phrases of the message)
    "pending_not_object": (lambda r: r.update(pending=[[1, 2, 3]]),
                           ["session file bad.json: 'pending' must be an object",
                            "got [[1, 2, 3]]"]),
    "settings_not_object": (lambda r: r.update(settings=["z"]),
                            ["session file bad.json: 'settings' must be an object, got ['z']"]),
    "object_not_object": (lambda r: r["operations"][0]["objects"].__setitem__(0, [1, 2]),
                          ["bad.json, operation 1, object 1: must be an object", "got [1, 2]"]),
    "candidate_negative": (lambda r: r["operations"][0]["objects"][0].update(candidate=-5),
                           ["bad.json, operation 1, object 1: 'candidate' must be a whole "
                            "number >= 0", "got -5"]),
    "candidate_not_int": (lambda r: r["operations"][0]["objects"][0].update(candidate=1.5),
                          ["operation 1, object 1: 'candidate' must be", "got 1.5"]),
    "candidate_too_big": (lambda r: r["operations"][0]["objects"][0].update(candidate=3),
                          ["operation 1, object 1", "below 'n_candidates' 3), got 3"]),
    "overwrite_missing": (lambda r: r["operations"][0].pop("overwrite"),
                          ["bad.json, operation 1: 'overwrite' must be true or false, it is "
                           "missing"]),
    "overwrite_not_bool": (lambda r: r["operations"][1].update(overwrite="yes"),
                           ["bad.json, operation 2: 'overwrite' must be true or false, got "
                            "'yes'"]),
    "volume_key_letter": (lambda r: _volume_key(r, "a"),
                          ["bad.json, operation 3: object 'a': the keys of 'prompts' must be "
                           "object ids, whole numbers >= 1"]),
    "volume_key_zero": (lambda r: _volume_key(r, "0"),
                        ["bad.json, operation 3: object '0': the keys of 'prompts'"]),
    "options_unknown": (lambda r: r["operations"][2].update(options={"bogus": 1}),
                        ["bad.json, operation 3: 'options' {'bogus': 1} are not options of "
                         "segment_volume", "it takes area_factor, axis_kind,"]),
    "options_axis": (lambda r: r["operations"][2].update(options={"axis_kind": "q"}),
                     ["operation 3: 'options' {'axis_kind': 'q'}", "(axis_kind 'z' or 't')"]),
    "tiling_damaged": (lambda r: r["settings"].update(
        tiling={"image_shape": [64, 64], "window": 0, "halo": 0}),
        ["bad.json: 'settings.tiling' {'image_shape': [64, 64], 'window': 0, 'halo': 0} is not "
         "the tiling of the image's slices (the window side must be at least 8 pixels, got 0)"]),
    "tiling_other_image": (lambda r: r["settings"].update(
        tiling={"image_shape": [32, 64], "window": 16, "halo": 2}),
        ["'settings.tiling'", "(the image's slices are [64, 64])"]),
    "tiling_missing_key": (lambda r: r["settings"].update(tiling={"window": 16}),
                           ["'settings.tiling' {'window': 16}", "('image_shape')"]),
    "precision": (lambda r: r["model"].update(precision="fp8"),
                  ["session file bad.json: 'model.precision' must be 'fp32', 'bf16' or 'fp16' "
                   "(or null), got 'fp8'"]),
    "slice_of_operation": (lambda r: r["operations"][0].update(slice=5),
                           ["bad.json, operation 1, object 1: its prompt is on slice 1, the "
                            "operation on slice 5"]),
}


def _write_bad(tmp_path: Path, case: str) -> Path:
    record = S.to_dict(small_session())
    record["labels"] = record["base"] = None
    BAD[case][0](record)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(record))
    return bad


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_session_files_are_refused_naming_the_entry_and_what_is_expected(tmp_path,
                                                                                 case):
    with pytest.raises(S.SessionError) as err:
        S.read_session(_write_bad(tmp_path, case))
    for words in BAD[case][1]:
        assert words in str(err.value), str(err.value)


def test_valid_sessions_still_read(files, tiny_sam, tmp_path):
    good = S.write_session(make_session(files, tiny_sam), tmp_path / "s.json")
    assert [op["kind"] for op in S.read_session(good).operations] == ["slice", "slice", "volume"]
    sess = small_session()
    sess.settings["tiling"] = {"image_shape": [64, 64], "window": 32, "halo": 4}
    sess.operations[2]["options"] = {"axis_kind": "t", "mode": "box", "max_slices": 3}
    back = S.read_session(S.write_session(sess, tmp_path / "t.json"))
    assert S.recorded_tiling(back).key() == sess.settings["tiling"]
    sess.operations[2]["options"] = {"method": "sam2", "stop_after_absent": 2}
    sess.model["precision"] = None  # saved before a model was loaded
    back = S.read_session(S.write_session(sess, tmp_path / "u.json"))
    assert back.operations[2]["options"] == {"method": "sam2", "stop_after_absent": 2}


@pytest.mark.parametrize("case", ["precision", "options_unknown", "candidate_negative",
                                  "pending_not_object"])
def test_cli_refuses_malformed_sessions_with_exit_2_before_any_work(files, tmp_path, case,
                                                                    capsys):
    from napari_sam.cli import main

    bad = _write_bad(tmp_path, case)
    record = json.loads(bad.read_text())
    record["model"]["name"] = str(files["model"])
    bad.write_text(json.dumps(record))
    out = tmp_path / "out"
    code = main(["segment", str(files["stack"]), "--prompts", str(bad), "-o", str(out),
                 "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and BAD[case][1][-1] in err and "Traceback" not in err
    assert not out.exists()


# ---------------------------------------------------------------- 3: compare, the docs snippet
def test_compare_takes_none_for_a_side_without_labels():
    labels = np.zeros((3, 8, 8), np.uint32)
    labels[1, 2:4, 2:5] = 4
    new = S.compare(None, labels)
    assert new == [{"id": 4, "status": "new", "iou": 0.0, "area_before": 0, "area_after": 6,
                    "slices_before": None, "slices_after": [1, 1]}]
    gone = S.compare(labels, None)
    assert [(c["id"], c["status"], c["area_after"]) for c in gone] == [(4, "gone", 0)]
    assert S.describe_changes(new) == ["object 4: new"]
    with pytest.raises(ValueError, match="compare: both labels are None; give at least one"):
        S.compare(None, None)


def _docs_snippet() -> str:
    text = DOCS.read_text(encoding="utf-8")
    return re.search(r"From Python.*?```python\n(.*?)```", text, re.S).group(1)


def test_the_docs_python_snippet_replays_as_the_cli_does(files, tiny_sam, tmp_path,
                                                         monkeypatch, capsys):
    """The snippet embeds with the session's recorded precision (one that ``auto`` does not
    pick here), as ``napari-sam segment --prompts`` does, and writes the CLI's labels."""
    import tifffile
    import torch

    import napari_sam as ns
    from napari_sam.cli import main
    from napari_sam.device import PRECISION_ENV, precision_name, resolve_precision

    monkeypatch.setenv(PRECISION_ENV, "auto")  # the CLI sets it: restored after the test
    auto = precision_name(resolve_precision("auto", torch.device("cpu")))
    recorded = "fp32" if auto == "bf16" else "bf16"
    sess = make_session(files, tiny_sam)
    sess.model["precision"] = recorded
    sess.labels = None  # a session without a labels TIFF: compare gets None
    S.write_session(sess, tmp_path / "work.json")
    used = []
    real_embed = ns.embed

    def embed(*args, **kwargs):
        emb = real_embed(*args, **{"device": "cpu", **kwargs})
        used.append(emb.predictor.precision)
        return emb

    monkeypatch.setattr(ns, "embed", embed)
    monkeypatch.chdir(tmp_path)
    scope = {"stack": blob_stack()}
    exec(_docs_snippet(), scope)  # the documented code, as a user runs it
    assert used == [recorded]
    assert {c["status"] for c in scope["changes"]} == {"new"}
    out = tmp_path / "out"
    assert main(["segment", str(files["stack"]), "--prompts", "work.json", "-o", str(out),
                 "--device", "cpu"]) == 0
    assert f"precision {recorded}: the session's" in capsys.readouterr().err
    assert np.array_equal(scope["result"].labels, tifffile.imread(out / "blobs_labels.tif"))
