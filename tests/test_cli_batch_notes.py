"""What a batch run says beside each file (its stderr note and its row in the summary) and
records in its sidecar: ``--axes`` that override the axes a file's metadata names,
``segment``'s objects lost, and the summary's notes handed on by the runners instead of
read back from the output metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from stacks import blob_stack


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in offline_cli's surroundings (tests/conftest.py)."""


FAST = ("--device", "cpu")
AUTO_FAST = ("--points-per-side", "4", "--no-propagate", *FAST)


def _sidecar(path):
    return json.loads(path.with_name(path.name + ".json").read_text())


def _row(stdout: str, name: str) -> str:
    """The summary row of input ``name``."""
    rows = [line for line in stdout.splitlines() if line.startswith("  ") and f" {name} " in line]
    assert len(rows) == 1, stdout
    return rows[0]


# ------------------------------------------------------------- 1: --axes over the file's axes
def test_axes_that_override_the_files_axes_are_said(tmp_path, tiny_model, capsys):
    """``--axes TYX`` on an ImageJ stack whose metadata names ZYX was read as a movie with
    no word. Now the file's line, its summary row and its sidecar say that --axes overrode
    the file's axes; --axes that agree with the file, or a file whose metadata names no axes,
    get no note."""
    d = tmp_path / "in"
    d.mkdir()
    tifffile.imwrite(d / "ij.tif", blob_stack(z=3), imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(d / "plain.tif", blob_stack(z=3),  # shape only: no axes named
                     photometric="minisblack")
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", d, "-o", out, "--axes", "TYX", "--model", tiny_model,
                           *AUTO_FAST], capsys)
    assert rc == 0, err
    said = "--axes TYX overrides the file's axes ZYX (from its metadata)"
    assert f"napari-sam: note: ij.tif: {said}; if those are right, run it without --axes" in err
    assert said in _row(stdout, "ij.tif")
    assert "overrides" not in _row(stdout, "plain.tif") and err.count("overrides") == 1
    extra = _sidecar(out / "ij_labels.tif")["extra"]
    assert extra["axes"] == "TYX" and extra["axes_from"] == "--axes"
    assert extra["file_axes"] == "ZYX" and said in extra["axes_overridden"]
    assert "file_axes" not in _sidecar(out / "plain_labels.tif")["extra"]
    rc, stdout, err = cli(["auto", d / "ij.tif", "-o", tmp_path / "same", "--axes", "zyx",
                           "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 0, err
    assert "overrides" not in stdout + err


def test_axes_of_another_length_name_the_files_axes(tmp_path, tiny_model, capsys):
    """``--axes ZYX`` on a (T, Z, Y, X) OME-TIFF failed with "e.g. 'CZYX' (then choose a
    channel with --channel N)": a guess, although the file names its axes. Now the reason
    names them and what to do; the other file of the batch is done."""
    d = tmp_path / "in"
    d.mkdir()
    tifffile.imwrite(d / "movie.ome.tif", np.stack([blob_stack(z=2)] * 2), ome=True,
                     metadata={"axes": "TZYX"})
    tifffile.imwrite(d / "plain.tif", blob_stack(z=3), photometric="minisblack")
    rc, stdout, err = cli(["auto", d, "-o", tmp_path / "out", "--axes", "ZYX",
                           "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 1, err
    assert ("--axes ZYX does not fit this file: its data has 4 dimensions (shape "
            "(2, 2, 64, 64)), axes TZYX from its metadata; run it without --axes, apart from "
            "the files --axes is meant for") in _row(stdout, "movie.ome.tif")
    assert "CZYX" not in stdout
    assert "1 done, 0 skipped, 1 failed" in stdout


# ---------------------------------------------------------- 3: segment's lost objects
def _stack_losing_object_2(tmp_path):
    """``tmp_path/a.tif`` (a 3-slice blob stack) and the prompts file returned: object 1 a
    click, object 2 a box without area, which the demo model gives no mask (lost)."""
    tifffile.imwrite(tmp_path / "a.tif", blob_stack(z=3), imagej=True,
                     metadata={"axes": "ZYX"})
    prompts = tmp_path / "p.csv"
    prompts.write_text("file,id,slice,row,col,label,row0,col0,row1,col1\n"
                       "a.tif,1,1,20,20,1,,,,\n"
                       "a.tif,2,1,,,,4,58,4,58\n")
    return prompts


def test_segment_records_and_says_its_lost_objects(tmp_path, tiny_model, capsys):
    """``segment`` (SAM 1) said a lost object on stderr only: its sidecar had no ``lost``
    (``--method sam2``'s had one), and the summary said nothing. Now both sidecars have
    it ({} when none is lost) and the summary row names the lost objects. (The bundled demo
    model gives a box without area no mask; the tiny random model gives it one.)"""
    prompts = _stack_losing_object_2(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = cli(["segment", tmp_path / "a.tif", "--prompts", prompts, "-o", out,
                           "--model", "demo", *FAST], capsys)
    assert rc == 0, err
    lost = _sidecar(out / "a_labels.tif")["extra"]["lost"]
    assert list(lost) == ["2"] and "empty mask" in lost["2"]
    assert "objects [2] are not in the labels" in err
    assert ('object 2 is not in the labels ("lost" in its sidecar says why)'
            in _row(stdout, "a.tif"))
    prompts.write_text("file,id,slice,row,col,label\na.tif,1,1,20,20,1\n")
    rc, stdout, err = cli(["segment", tmp_path / "a.tif", "--prompts", prompts, "-o",
                           tmp_path / "out2", "--model", tiny_model, *FAST], capsys)
    assert rc == 0, err
    assert _sidecar(tmp_path / "out2" / "a_labels.tif")["extra"]["lost"] == {}
    assert "not in the labels" not in stdout


# ------------------------------------------------ 4: the summary's note, not read back
@pytest.mark.parametrize("command", ["auto", "embed"])
def test_the_summary_note_is_handed_on_not_read_back(tmp_path, tiny_model, capsys,
                                                     monkeypatch, command):
    """``run_job`` read the output metadata back after the runner had written it, only to
    find the ``--channel`` note for the summary. Now the runner hands the note on: no read
    of an output's metadata once it is written, and the summary still says it."""
    from napari_sam import io as nio

    tifffile.imwrite(tmp_path / "a.tif", blob_stack(z=3), imagej=True,
                     metadata={"axes": "ZYX"})
    written, late = set(), []
    write, read = nio.write_output_metadata, nio.read_output_metadata

    def counted_write(path, *args, **kwargs):
        write(path, *args, **kwargs)
        written.add(str(path))

    def counted_read(path, *args, **kwargs):
        if str(path) in written:
            late.append(str(path))
        return read(path, *args, **kwargs)

    monkeypatch.setattr(nio, "write_output_metadata", counted_write)
    monkeypatch.setattr(nio, "read_output_metadata", counted_read)
    extra = AUTO_FAST if command == "auto" else FAST
    rc, stdout, err = cli([command, tmp_path / "a.tif", "-o", tmp_path / "out", "--channel",
                           "0", "--model", tiny_model, *extra], capsys)
    assert rc == 0, err
    assert written and late == []
    assert "--channel 0 not used: the file has no channel axis" in _row(stdout, "a.tif")


# ------------------------------------------------ 5: an output on the kernel's file systems
def _on_procfs() -> bool:
    import os

    return os.path.exists("/proc/self/mounts")


@pytest.mark.skipif(not _on_procfs(), reason="needs Linux's /proc")
def test_export_into_proc_names_the_target_and_why(tmp_path, capsys):
    """``export onnx demo -o /proc/x`` said "cannot write to /proc (No such file or
    directory)": /proc exists, the folder asked for was not named, and nothing said why.
    Now the error names the target, says that /proc holds no files and what to do; nothing
    is written. ``-o /proc/x`` of a batch command says the same, without "fix its
    permissions" (no permission would help)."""
    rc, stdout, err = cli(["export", "onnx", "demo", "-o", "/proc/napari-sam-x",
                           "--decoder-only", "-q"], capsys)
    assert rc == 2, err
    assert ("cannot write to /proc/napari-sam-x (/proc is on the kernel's proc file system, "
            "which describes the running system and holds no files); choose a folder you "
            "can write to") in err
    assert "No such file" not in err
    tifffile.imwrite(tmp_path / "a.tif", blob_stack(z=2), photometric="minisblack")
    rc, stdout, err = cli(["auto", tmp_path / "a.tif", "-o", "/proc/napari-sam-x"], capsys)
    assert rc == 2, err
    assert ("-o /proc/napari-sam-x: cannot write there (/proc is on the kernel's proc file "
            "system, which describes the running system and holds no files); choose a folder "
            "you can write to") in err
    assert "permissions" not in err and "No such file" not in err


def test_unwritable_reason_of_an_ordinary_folder_is_the_errors(tmp_path):
    """Elsewhere the reason is the error's own, after the folder's name."""
    import errno

    from napari_sam.io import unwritable_reason

    exc = PermissionError(errno.EACCES, "Permission denied")
    assert unwritable_reason(tmp_path, exc) == f"{tmp_path}: permission denied"
    assert unwritable_reason(tmp_path) == f"{tmp_path}: permission denied"


def test_segment_says_lost_objects_without_touching_the_warning_filters(
        tmp_path, capsys, monkeypatch):
    """``segment`` silenced its LostObjectsWarning with ``warnings.catch_warnings``, which
    is not thread-safe and put an "ignore" filter before every thread's while the stack
    propagated (a distributed worker's or a script's warnings meanwhile were dropped); it
    asks ``segment_volume`` for no warning instead and still says the lost object."""
    import warnings

    import napari_sam.volume as V
    from napari_sam.volume.result import LostObjectsWarning

    real, seen = V.segment_volume, []

    def watched(*args, **options):
        seen.append([f for f in warnings.filters if f[0] == "ignore" and f[1] is None
                     and issubclass(LostObjectsWarning, f[2])])  # whatever the message
        return real(*args, **options)

    monkeypatch.setattr(V, "segment_volume", watched)
    prompts = _stack_losing_object_2(tmp_path)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        rc, _, err = cli(["segment", tmp_path / "a.tif", "--prompts", prompts, "-o",
                          tmp_path / "out", "--model", "demo", *FAST], capsys)
    assert rc == 0, err
    assert seen == [[]]
    assert "objects [2] are not in the labels" in err
    assert not [w for w in said if issubclass(w.category, LostObjectsWarning)]
