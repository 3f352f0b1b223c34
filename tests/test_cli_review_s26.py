"""What a user meets after the s26 review: the ``--axes`` hint for a channels-last stack saved
without axes (and following it literally), whole-number float slices in the Python API,
semicolon- or tab-separated prompts files, and an earlier output of an input whose prompt
rows were deleted.

Every case asserts the exit code, the line the user reads and the resulting arrays or files;
none prints a traceback.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line, md5s, noise_image
from stacks import blob_stack


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


AUTO_FAST = ("--points-per-side", "4", "--device", "cpu", "-q")


# ----------------------------------------------------------------------------- 1: --axes hint
@pytest.mark.parametrize(("stack_shape", "axes", "short"), [
    ((4, 61, 57), "ZYXC", "YXC"),  # a Z stack with 2 channels last: 4D
    ((61, 57), "YXC", "YX"),  # one 2-channel image: 3D
])
def test_channels_last_stack_without_axes_gets_a_hint_that_runs(tmp_path, tiny_model, capsys,
                                                                stack_shape, axes, short):
    """A (4, 61, 57, 2) TIFF without axes metadata read as TZYX (57 x 2 slices): the hint gave
    ``--axes YXC`` whatever the dimensions, which was refused with the example 'CZYX' (X=2).
    The hint now has one letter per dimension and following it literally runs."""
    a = (np.random.default_rng(0).random(stack_shape) * 1000).astype(np.uint16)
    inp = tmp_path / "mix2.tif"
    tifffile.imwrite(inp, np.stack([a, a], -1))
    out = tmp_path / "out"
    rc, _, err = cli(["auto", inp, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 1
    assert "gives slices of 57 x 2 pixels, too small to segment" in err
    assert f"give the axes: --axes {axes} --channel N (N from 0 to 1)" in err
    hinted = re.search(r"--axes (\S+) --channel N", err).group(1)
    assert hinted == axes
    # the wrong number of letters: the example puts the channels last, as many letters as dims
    rc, _, err = cli(["auto", inp, "-o", out, "--axes", short, "--model", tiny_model,
                      *AUTO_FAST], capsys)
    assert rc == 1 and f"e.g. {axes!r} (then choose a channel with --channel N)" in err
    assert "'CZYX'" not in err
    # following the hint literally
    rc, _, err = cli(["auto", inp, "-o", out, "--axes", hinted, "--channel", "1",
                      "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 0, err
    labels = tifffile.imread(out / "mix2_labels.tif")
    assert labels.shape == stack_shape


def test_too_small_image_without_a_channel_reading_gets_no_channel_hint(tmp_path):
    """A (61, 2) image: no channels-last reading gives usable slices, so the hint does not
    offer one (it offered --axes YXC, which needs 3 dimensions)."""
    from napari_sam import io

    p = tmp_path / "thin.npy"
    np.save(p, np.zeros((61, 2), np.uint16))
    with pytest.raises(io.ImageReadError) as info:
        io.read_image(p)
    msg = str(info.value)
    assert "61 x 2 pixels, too small to segment" in msg
    assert "--channel" not in msg and "at least 8 x 8 pixels" in msg


# ----------------------------------------------------------------------------- 2: float slice
@pytest.fixture
def blob_embeddings(tiny_sam):
    from napari_sam import embed

    return embed(blob_stack(), tiny_sam, device="cpu", precision="fp32")


def test_segment_volume_takes_a_whole_number_float_slice(blob_embeddings):
    """napari's Points data are floats: ``{"slice": p[0]}`` with 3.0 was refused although
    the CSV reader takes "3.0". It now gives the same labels as slice 3."""
    from napari_sam import segment_volume

    want = segment_volume(blob_embeddings, {1: [{"slice": 3, "points": [[20, 20]]}]}).labels
    assert (want == 1).sum() > 0
    for z in (3.0, np.float64(3.0), np.float32(3.0)):
        got = segment_volume(blob_embeddings, {1: [{"slice": z, "points": [[20, 20]]}]})
        np.testing.assert_array_equal(got.labels, want)


@pytest.mark.parametrize(("z", "message"), [
    (3.5, r"object 1: slice index must be a whole number, got 3\.5"),
    (float("nan"), r"object 1: slice index must be a whole number, got nan"),
    (np.float64("inf"), r"object 1: slice index must be a whole number, got inf"),
    (True, r"object 1: slice index must be an integer, got True"),
    (np.bool_(True), r"object 1: slice index must be an integer"),
    (9.0, r"object 1: slice 9 is out of range for a stack of 6 slices"),
])
def test_segment_volume_refuses_a_slice_that_is_no_whole_number(blob_embeddings, z, message):
    from napari_sam import segment_volume

    with pytest.raises(ValueError, match=message):
        segment_volume(blob_embeddings, {1: [{"slice": z, "points": [[20, 20]]}]})


# ----------------------------------------------------------------------------- 3: separators
@pytest.mark.parametrize(("sep", "said", "fix"), [
    (";", "separated by semicolons (';')", "replace every ';' by ','"),
    ("\t", "separated by tabs", "replace every tab by ','"),
])
def test_semicolon_or_tab_separated_prompts_file_is_named(tmp_path, tiny_model, capsys, sep,
                                                           said, fix):
    """Excel's CSV export where the decimal mark is a comma: the whole header was read as one
    unknown column ('file;id;slice;row;col'). Now exit 2 saying what separates the file and
    how to fix it, before any work; the comma-separated file then runs."""
    inp = noise_image(tmp_path / "a.tif", shape=(3, 64, 64))
    rows = [["file", "id", "slice", "row", "col"], ["a.tif", "1", "1", "30", "30"]]
    p = tmp_path / "prompts.csv"
    p.write_text("".join(sep.join(r) + "\n" for r in rows))
    out = tmp_path / "out"
    base = ["segment", inp, "-p", p, "-o", out, "--model", tiny_model, "--device", "cpu", "-q"]
    rc, _, err = cli(base, capsys)
    line = error_line(err)
    assert rc == 2
    assert f"prompts file {str(p)!r} is {said}" in line
    assert "must be comma-separated" in line and fix in line
    assert "unknown column" not in line
    assert not out.exists()
    p.write_text(p.read_text().replace(sep, ","))
    rc, _, err = cli(base, capsys)
    assert rc == 0, err
    assert (tifffile.imread(out / "a_labels.tif")[1] == 1).any()


# ----------------------------------------------------------------------------- 4: deleted rows
@pytest.mark.parametrize("overwrite", [False, True])
def test_deleted_prompt_rows_say_the_earlier_output_is_left(tmp_path, tiny_model, capsys,
                                                            overwrite):
    """Rows of a.tif deleted from the prompts file: the rerun skipped a.tif saying "nothing
    written" while out/a_labels.tif from the old rows stayed with a complete sidecar. The skip
    now names that output and says it was left as it was (and --overwrite does not replace
    it); the file and its sidecar are byte for byte as they were."""
    src = tmp_path / "in"
    noise_image(src / "a.tif", shape=(3, 64, 64), seed=1)
    noise_image(src / "b.tif", shape=(3, 64, 64), seed=2)
    p = tmp_path / "p.csv"
    p.write_text("file,id,slice,row,col\na.tif,1,1,30,30\nb.tif,1,1,30,30\n")
    out = tmp_path / "out"
    base = ["segment", src, "-o", out, "-p", p, "--model", tiny_model, "--device", "cpu"]
    rc, _, err = cli(base, capsys)
    assert rc == 0, err
    labels, sidecar = out / "a_labels.tif", out / "a_labels.tif.json"
    before = md5s(labels, sidecar)
    p.write_text("file,id,slice,row,col\nb.tif,1,1,30,30\n")
    rc, stdout, err = cli([*base, *(["--overwrite"] if overwrite else [])], capsys)
    assert rc == 0, err
    line = next(s for s in err.splitlines() if s.startswith("skipped  a.tif"))
    assert "no prompts for it in the prompts file; nothing written" in line
    assert (f"an earlier output {labels} (made by an earlier run from prompts no longer in "
            "the file) is still there and was left as it was") in line
    assert "--overwrite does not replace it" in line
    assert "delete it and a_labels.tif.json if it no longer applies" in line
    done = "1 done (1 replaced an earlier output)" if overwrite else "0 done"  # b's
    assert f"{done}, {1 if overwrite else 2} skipped (1 without prompts)" in stdout
    assert md5s(labels, sidecar) == before
    assert json.loads(sidecar.read_text())["status"] == "complete"


def test_an_input_without_prompts_and_no_earlier_output_keeps_the_short_reason(
        tmp_path, tiny_model, capsys):
    src = tmp_path / "in"
    noise_image(src / "a.tif", seed=1)
    noise_image(src / "b.tif", seed=2)
    p = tmp_path / "p.csv"
    p.write_text("file,id,slice,row,col\nb.tif,1,0,30,30\n")
    rc, _, err = cli(["segment", src, "-o", tmp_path / "out", "-p", p, "--model", tiny_model,
                      "--device", "cpu"], capsys)
    assert rc == 0
    line = next(s for s in err.splitlines() if s.startswith("skipped  a.tif"))
    assert line.endswith("to segment it)") and "earlier output" not in line


def test_auto_that_finds_nothing_says_what_to_try(tmp_path, capsys):
    """A file `auto` finds no object in (a review: an RGB stack the demo model left empty)
    was reported as done with 0 objects and nothing else."""
    blank = tmp_path / "in" / "blank.tif"
    blank.parent.mkdir()
    tifffile.imwrite(blank, np.full((64, 64), 7, np.uint16))
    rc, out, err = cli(["auto", blank, "-o", tmp_path / "out", "--model", "demo"], capsys)
    assert rc == 0, err
    line = next(ln for ln in err.splitlines() if "done     blank.tif" in ln)
    assert "(0 objects" in line and "nothing stood out: check the channel (--channel N)" in line
    assert tifffile.imread(tmp_path / "out" / "blank_labels.tif").max() == 0
