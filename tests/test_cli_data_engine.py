"""The data engine from the shell (helper walk-through, session 30): segment, correct the
outputs by hand, rerun or retrain; what the user corrected is never replaced unasked."""

from __future__ import annotations

import os

import pytest
import tifffile

from cli_runner import cli
from napari_sam import io as nio

pytestmark = pytest.mark.usefixtures("offline_cli")


def _blobs(path, seed=0):
    from stacks import blob_stack

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, blob_stack(z=3, seed=seed), photometric="minisblack")
    return path


@pytest.fixture
def done(tmp_path, tiny_model, capsys):
    """``auto`` over one stack: (argv, input, output)."""
    inp = _blobs(tmp_path / "data" / "blobs.tif")
    argv = ["auto", inp, "-o", tmp_path / "out", "--model", tiny_model, "--points-per-side",
            "4", "-q"]
    rc, _, err = cli(argv, capsys)
    out = tmp_path / "out" / "blobs_labels.tif"
    assert rc == 0 and out.is_file(), err
    return argv, inp, out


def test_a_rerun_keeps_labels_corrected_by_hand(done, capsys):
    """The docs' loop: correct auto's labels by hand, rerun the same command (to resume, or
    with the retrained model). The rerun replaced the corrections without a word (the
    output's size had changed, so it counted as "changed"). Now it is kept, the summary
    says why, and --overwrite replaces it."""
    argv, inp, out = done
    labels = tifffile.imread(out)
    labels[0, :10, :10] = 999  # the correction, saved as napari or tifffile would
    tifffile.imwrite(out, labels, photometric="minisblack")
    assert nio.output_edited(out)
    rc, stdout, _ = cli([a for a in argv if a != "-q"], capsys)
    assert rc == 0
    assert (tifffile.imread(out) == 999).sum() == 100
    assert "1 skipped (1 changed since written: kept)" in stdout, stdout
    assert "changed since napari-sam wrote it (labels corrected by hand?): kept as it is; pass " \
           "--overwrite to replace it" in stdout
    # the input changed too (a new acquisition under the same name): still kept
    _blobs(inp, seed=1)
    assert cli(argv, capsys)[0] == 0 and (tifffile.imread(out) == 999).sum() == 100
    rc, _, _ = cli([*argv, "--overwrite"], capsys)
    assert rc == 0 and not (tifffile.imread(out) == 999).any()
    assert not nio.output_edited(out)


def test_an_edit_that_keeps_the_size_is_seen_and_a_copy_is_not_an_edit(done, capsys):
    argv, _, out = done
    before = out.read_bytes()
    meta = nio.read_output_metadata(out)
    assert meta["output"]["sha256"] and meta["output"]["mtime_ns"] == out.stat().st_mtime_ns
    # a copy that kept the content (cp without -p: another mtime) is not an edit: skipped
    os.utime(out, ns=(out.stat().st_atime_ns, out.stat().st_mtime_ns + 10**9))
    assert not nio.output_edited(out)
    assert cli(argv, capsys)[0] == 0 and out.read_bytes() == before
    # the same size, other bytes
    data = bytearray(before)
    data[-1] ^= 0xFF
    out.write_bytes(bytes(data))
    assert nio.output_edited(out)
    assert cli(argv, capsys)[0] == 0 and out.read_bytes() == bytes(data)


def test_a_segment_output_corrected_by_hand_is_kept(tmp_path, tiny_model, capsys):
    inp = _blobs(tmp_path / "blobs.tif")
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,slice,row,col\n1,1,20,20\n")
    argv = ["segment", inp, "-o", tmp_path / "out", "-p", prompts, "--model", tiny_model, "-q"]
    assert cli(argv, capsys)[0] == 0
    out = tmp_path / "out" / "blobs_labels.tif"
    labels = tifffile.imread(out)
    labels[2, :5, :5] = 7
    tifffile.imwrite(out, labels, photometric="minisblack")
    prompts.write_text("id,slice,row,col\n1,1,20,20\n2,1,40,40\n")  # another object added
    rc, stdout, _ = cli([a for a in argv if a != "-q"], capsys)
    assert rc == 0 and (tifffile.imread(out) == 7).sum() == 25
    assert "kept as it is" in stdout
