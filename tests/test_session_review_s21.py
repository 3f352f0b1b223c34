"""Session review 21 (library and CLI side): ``write_session`` refuses to replace the image or
any file that is not a session; ``keep_aside`` keeps a session and its labels under a dated
name; ``image_differences`` names another image; an edited labels TIFF is refused with the
next step; a stack whose TIFF names its slices as colour samples is replayed with the
session's axes, and the shape error says to give ``--axes ZYX``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_sam import session as S
from stacks import blob_stack
from test_session import operations


def small_session(tmp_path: Path, labels: np.ndarray | None = None) -> S.Session:
    """Three commits on a (6, 64, 64) stack saved as ``tmp_path/blobs.tif``."""
    import tifffile

    image = tmp_path / "blobs.tif"
    tifffile.imwrite(image, blob_stack())
    return S.Session(image={"path": str(image), "name": "blobs", "shape": [6, 64, 64],
                            "layer_shape": [6, 64, 64], "channel_axis": None, "rgb": False,
                            "hash": S.image_hash(blob_stack())},
                     model={"name": "vit_b_lm", "precision": "fp32"},
                     settings={"axis_kind": "z", "overwrite": False, "store": None},
                     operations=operations(), labels=labels,
                     pending={"points": [], "labels": [], "boxes": []})


def labels_of() -> np.ndarray:
    lab = np.zeros((6, 64, 64), np.uint32)
    lab[1, 10:20, 10:20] = 1
    lab[2, 30:40, 30:40] = 2
    return lab


# ---------------------------------------------------------------- 3: write_session's path
def test_write_session_refuses_the_sessions_own_image(tmp_path):
    import tifffile

    sess = small_session(tmp_path, labels_of())
    image = tmp_path / "blobs.tif"
    before = image.read_bytes()
    with pytest.raises(S.SessionError, match="that is the session's image.*give a .json name"):
        S.write_session(sess, image)
    assert image.read_bytes() == before
    assert np.array_equal(tifffile.imread(image), blob_stack())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs.tif"]  # no TIFF written


@pytest.mark.parametrize("name", ["other.tif", "notes.txt", "work"])
def test_write_session_refuses_a_name_without_json(tmp_path, name):
    sess = small_session(tmp_path, labels_of())
    (tmp_path / name).write_text("mine")
    with pytest.raises(S.SessionError, match=r"ends in \.json; give e\.g\."):
        S.write_session(sess, tmp_path / name)
    assert (tmp_path / name).read_text() == "mine"


def test_write_session_refuses_a_json_file_that_is_no_session(tmp_path):
    sess = small_session(tmp_path, labels_of())
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"mine": 1}))
    with pytest.raises(S.SessionError, match="exists and is not a napari-sam session"):
        S.write_session(sess, other)
    assert json.loads(other.read_text()) == {"mine": 1}
    # a session file there is replaced, as before
    path = S.write_session(sess, tmp_path / "work.json")
    S.write_session(sess, path)
    assert len(S.read_session(path).operations) == 3


# ---------------------------------------------------------------- 1: keep_aside
def test_keep_aside_keeps_the_session_and_its_labels(tmp_path):
    sess = small_session(tmp_path, labels_of())
    path = S.write_session(sess, tmp_path / "blobs.tif.sam-session.json")
    kept = S.keep_aside(path)
    assert kept.name.startswith("blobs.tif.sam-session.kept-") and kept.suffix == ".json"
    # now the autosave is replaced by another session: the kept one stays complete
    other = small_session(tmp_path, np.zeros((6, 64, 64), np.uint32))
    other.operations = []
    S.write_session(other, path)
    back = S.read_session(kept)
    assert np.array_equal(back.labels, labels_of()) and len(back.operations) == 3
    assert S.read_session(path).operations == []
    assert S.keep_aside(path) != kept  # a second one gets its own name


# ---------------------------------------------------------------- 4: image_differences
def test_image_differences_name_other_pixels_and_another_name(tmp_path):
    sess = small_session(tmp_path)
    assert S.image_differences(sess, content_hash=sess.image["hash"], name="blobs") == []
    other = S.image_hash(blob_stack()[::-1].copy())
    (pixels, name) = S.image_differences(sess, content_hash=other, name="cells", what="'cells'")
    assert "other pixels" in pixels and sess.image["hash"][:8] in pixels and other[:8] in pixels
    assert "named 'blobs'" in name and "'cells'" in name


# ---------------------------------------------------------------- 9: an edited labels TIFF
def test_an_edited_labels_tiff_says_what_to_do(tmp_path):
    import tifffile

    path = S.write_session(small_session(tmp_path, labels_of()), tmp_path / "work.json")
    ref = json.loads(path.read_text())["labels"]
    edited = labels_of()
    edited[4, 0:5, 0:5] = 9
    tifffile.imwrite(tmp_path / ref["path"], edited)
    with pytest.raises(S.SessionError) as err:
        S.read_session(path)
    text = str(err.value)
    assert "was changed since the session was saved" in text
    assert "open the TIFF as a labels layer" in text and ref["hash"] in text


# ---------------------------------------------------------------- 6: axes of a plain TIFF
@pytest.fixture
def plain_stack(tmp_path):
    """A 4-slice uint16 stack written by plain tifffile.imwrite (its planes stored as
    samples: read as CYX), and a session made on it in napari (4, 64, 64)."""
    import tifffile

    stack = (blob_stack()[:4] * 1000).astype(np.uint16)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, stack)
    sess = S.Session(image={"path": str(path), "name": "plain", "shape": [4, 64, 64],
                            "layer_shape": [4, 64, 64], "channel_axis": None, "rgb": False},
                     model={"name": "vit_b_lm"}, operations=[])
    return path, sess


def test_shape_error_suggests_the_sessions_axes(plain_stack):
    from napari_sam import io as nio

    path, sess = plain_stack
    img = nio.read_image(path)
    assert img.axes == "CYX"  # the file names its planes as samples
    with pytest.raises(S.SessionError, match="--axes ZYX on the command line"):
        S.check_image(sess, (1, 64, 64), what=path.name)
    assert S.recorded_axes(sess) == "ZYX"


def test_replay_opens_a_plain_stack_with_the_sessions_axes(plain_stack, capsys):
    from napari_sam.batch.context import Context
    from napari_sam.batch.reading import open_session_image

    path, sess = plain_stack
    ctx = Context(command="segment", model="vit_b_lm", out_dir=path.parent, device="cpu",
                  params={})
    opened = open_session_image(SimpleNamespace(input=path, name=path.name), ctx, sess)
    assert tuple(opened.label_shape) == (4, 64, 64) and not opened.is2d
    assert "read with axes ZYX" in capsys.readouterr().err
    # --axes given: kept as given
    ctx_yxc = Context(command="segment", model="vit_b_lm", out_dir=path.parent, device="cpu",
                      params={}, axes="CYX")
    again = open_session_image(SimpleNamespace(input=path, name=path.name), ctx_yxc, sess)
    assert again.is2d


# ---------------------------------------------------------------- 7, 11: the docs
ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_snippet_runs_verbatim_and_writes_the_clis_labels(files, tiny_sam, tmp_path,
                                                                   monkeypatch):
    """docs/sessions.md's Python replay, run as written (it reads the stack itself), writes
    what ``napari-sam segment --prompts`` writes."""
    import re

    import tifffile

    import napari_sam as ns
    from napari_sam.cli import main
    from test_session import make_session

    text = (ROOT / "docs" / "sessions.md").read_text(encoding="utf-8")
    snippet = re.search(r"From Python.*?```python\n(.*?)```", text, re.S).group(1)
    assert "emb.compute()" in snippet
    sess = make_session(files, tiny_sam)
    S.write_session(sess, tmp_path / "work.json")
    real_embed = ns.embed
    monkeypatch.setattr(ns, "embed", lambda *a, **k: real_embed(*a, **{"device": "cpu", **k}))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the documented code, as a user runs it
    assert scope["stack"].shape == (6, 64, 64)
    assert {c["status"] for c in scope["changes"]} == {"same"}
    out = tmp_path / "out"
    assert main(["segment", str(files["stack"]), "--prompts", "work.json", "-o", str(out),
                 "--device", "cpu", "-q"]) == 0
    assert np.array_equal(scope["result"].labels, tifffile.imread(out / "blobs_labels.tif"))


def test_readme_replays_the_autosave_by_its_name():
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (name,) = re.findall(r"segment stack\.tif .*--prompts (\S+)", text)
    assert name == S.session_file_for("stack.tif").name
