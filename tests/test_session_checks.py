"""Session-file checks (napari_sam.session_checks, napari_sam.session.check_image): the public
checking API, a volume commit's box partly outside the image replays as the dock committed it
(clipped, in the CLI too), and a prompt outside the image is refused naming the operation, the
object, the box and the fix, before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sam import session as S
from napari_sam import session_checks as C
from stacks import blob_session, blob_stack
from test_session import operations


def _session(ops=None, pending=None) -> S.Session:
    return S.Session(image={"path": "blobs.tif", "name": "blobs", "shape": [6, 64, 64]},
                     model={"name": "vit_b_lm", "precision": "fp32"},
                     operations=operations() if ops is None else ops,
                     pending=pending or {"points": [], "labels": [], "boxes": []})


def _volume_box_ops(box) -> list[dict]:
    ops = operations()
    ops[2]["prompts"] = {"1": [{"slice": 4, "box": [float(v) for v in box]}]}
    return ops


# ---------------------------------------------------------------- the module's public API
def test_check_record_is_the_readers_check_and_session_reexports_its_names():
    assert S.SessionError is C.SessionError and issubclass(C.SessionError, ValueError)
    assert (S.FORMAT, S.VERSION) == (C.FORMAT, C.VERSION)
    record = S.to_dict(_session())
    C.check_record(record, "s.json")  # a good record passes
    record["operations"][1]["objects"][0]["box"] = [40.0, 40.0, 30.0, 50.0]
    with pytest.raises(S.SessionError, match=r"^session file s\.json, operation 2, object 1: "
                                             r"box \[40\.0, 40\.0, 30\.0, 50\.0\] is inverted"):
        C.check_record(record, "s.json")
    err = C.session_error("s.json, operation 1", "a slice commit needs its 'objects'")
    assert isinstance(err, S.SessionError)
    assert str(err) == "session file s.json, operation 1: a slice commit needs its 'objects'"
    tiling = C.tiling_of({"image_shape": [64, 64], "window": 32, "halo": 4}, "s.json",
                         [6, 64, 64])
    assert tiling.key() == {"image_shape": [64, 64], "window": 32, "halo": 4}


# ---------------------------------------------------------------- a box partly outside
def test_a_volume_box_partly_outside_replays_as_the_dock_committed_it(tiny_sam, tmp_path):
    """The dock records the box as drawn ([-5, -5, 30, 30] on a 64 x 64 stack) and
    propagation clips it to the image: replay gives the dock's labels, which are those of
    the clipped box [0, 0, 30, 30]."""
    dock = blob_session(tiny_sam)
    dock.add_box(3, -5, -5, 30, 30)
    dock.propagate()
    assert dock.commit().ids == [1]
    saved = S.read_session(dock.save_session(tmp_path / "partly"))
    (op,) = saved.operations
    assert op["prompts"]["1"][0]["box"] == [-5.0, -5.0, 30.0, 30.0]  # recorded as drawn
    S.check_image(saved, (6, 64, 64))  # accepted: the box overlaps the image
    replayed = S.replay(saved, dock.emb)
    assert np.array_equal(replayed.labels, dock.labels) and (dock.labels == 1).any()
    clipped = S.Session(image=saved.image, model=saved.model,
                        operations=json.loads(json.dumps(saved.operations)))
    clipped.operations[0]["prompts"]["1"][0]["box"] = [0.0, 0.0, 30.0, 30.0]
    assert np.array_equal(S.replay(clipped, dock.emb).labels, dock.labels)


def test_the_cli_replays_a_volume_box_partly_outside_as_the_api_does(files, tiny_sam,
                                                                      tmp_path):
    import tifffile

    import napari_sam as ns
    from napari_sam.cli import main

    sess = _session(_volume_box_ops([40, 40, 90, 90]))  # beyond the far edge
    sess.model = {"name": str(files["model"])}
    expected = S.replay(sess, ns.embed(blob_stack(), tiny_sam, device="cpu")).labels
    path = S.write_session(sess, tmp_path / "far.json")
    out = tmp_path / "out"
    assert main(["segment", str(files["stack"]), "--prompts", str(path), "-o", str(out),
                 "--device", "cpu", "-q"]) == 0
    (written,) = out.glob("*.tif")
    assert np.array_equal(tifffile.imread(written).reshape(expected.shape), expected)
    assert (expected == 3).any()  # the propagated object of the far box


# ---------------------------------------------------------------- a prompt outside: refused
OUTSIDE = {  # case: (session, phrases of the message)
    "volume_box": (lambda: _session(_volume_box_ops([70, 70, 90, 90])),
                   ["session file s.json: operation 3, object 1: box [70.0, 70.0, 90.0, 90.0] on "
                    "slice 4 lies outside this image (64 x 64 pixels; boxes are [row0, col0, "
                    "row1, col1] in pixels and must overlap the image)",
                    "correct this prompt in the session file"]),
    "slice_point": (lambda: _session([{**operations()[0], "objects": [
        {**operations()[0]["objects"][0], "points": [[20.0, 64.0]]}]}]),
        ["operation 1, object 1: point (row 20, col 64) on slice 1 lies outside this image",
         "correct this prompt in the session file"]),
    "pending_box": (lambda: _session(pending={"points": [], "labels": [],
                                              "boxes": [[2.0, -30.0, 5.0, -1.0, 20.0]]}),
                    ["pending boxes: box [-30.0, 5.0, -1.0, 20.0] on slice 2 lies outside",
                     "remove it from 'pending' in the session file (it was never committed)"]),
}


@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_a_prompt_outside_the_image_is_refused_naming_it_and_the_fix(tmp_path, case):
    sess = S.read_session(S.write_session(OUTSIDE[case][0](), tmp_path / "s.json"))
    with pytest.raises(S.SessionError) as err:
        S.check_image(sess, (6, 64, 64))
    for words in OUTSIDE[case][1]:
        assert words in str(err.value), str(err.value)


def test_the_cli_refuses_a_volume_box_outside_before_any_work(files, tmp_path, capsys):
    from napari_sam.cli import main

    sess = _session(_volume_box_ops([70, 70, 90, 90]))
    sess.model = {"name": str(files["model"])}
    path = S.write_session(sess, tmp_path / "s.json")
    out = tmp_path / "out"
    code = main(["segment", str(files["stack"]), "--prompts", str(path), "-o", str(out),
                 "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "operation 3, object 1: box [70.0, 70.0, 90.0, 90.0] on slice 4 lies outside " \
           "blobs.tif" in err and "correct this prompt in the session file" in err
    assert not out.exists()


# ---------------------------------------------------------------- a movie's session
def test_a_movie_sessions_time_points_are_checked_when_read():
    """A movie's session (``image.time_points``) needs each operation's ``time_point`` and
    each pending prompt's within the movie; a volume's has none; the error names the entry."""
    record = S.to_dict(_session(pending={"points": [[1.0, 2.0, 3.0]], "labels": [1],
                                         "boxes": [], "times": [4], "box_times": []}))
    record["image"]["time_points"] = 5
    for t, op in zip((0, 4, 2), record["operations"]):
        op["time_point"] = t
    C.check_record(record, "m.json")  # a good movie record passes
    record["operations"][1]["time_point"] = 5
    with pytest.raises(S.SessionError, match=r"^session file m\.json, operation 2: needs a "
                                             r"'time_point' from 0 to 4 \(the movie has 5\), "
                                             r"got 5"):
        C.check_record(record, "m.json")
    record["operations"][1]["time_point"] = 1
    record["pending"]["times"] = [5]
    with pytest.raises(S.SessionError, match=r"'pending' has a prompt at time point 5, but the "
                                             r"movie has 5 time points"):
        C.check_record(record, "m.json")
    volume = S.to_dict(_session())
    volume["operations"][0]["time_point"] = 0
    with pytest.raises(S.SessionError, match=r"operation 1: needs no 'time_point' \(the image "
                                             r"is not a movie\), got 0"):
        C.check_record(volume, "v.json")
    assert S.labels_shape(record["image"]) == (5, 6, 64, 64)
    assert S.labels_shape(volume["image"]) == (6, 64, 64)
