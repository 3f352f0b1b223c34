"""A full or read-only disk while ``sample``, ``train`` and ``export onnx`` write: one line
naming the file and what to do (they said ``OSError: [Errno 28] No space left on device``,
or for a checkpoint ``[enforce fail at inline_container.cc:672] . unexpected pos ...``), no
partial file left, and a rerun after space is freed writes what a clean run writes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from cli_runner import cli, error_line, md5s
from full_disk import FillsUp

SAMPLE = ["sample", "nuclei-2d", "-n", "3", "--shape", "48,48", "-q"]


def _files(folder) -> list[str]:
    """Every file under ``folder`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())



def _sample_fails_saying(out, capsys, said: str) -> None:
    """``napari-sam sample`` into ``out`` exits 1 with the error line ``said``."""
    rc, _, err = cli([*SAMPLE, "-o", out], capsys)
    assert rc == 1
    assert error_line(err) == f"napari-sam: error: {said}"

def test_sample_on_a_full_disk_names_the_file_and_a_rerun_completes(tmp_path, capsys,
                                                                    monkeypatch):
    import tifffile

    clean, out = tmp_path / "clean", tmp_path / "out"
    assert cli([*SAMPLE, "-o", clean], capsys)[0] == 0
    write, calls = tifffile.imwrite, []

    def fills_up(file, *args, **kwargs):  # the disk fills up during the second image
        calls.append(file)
        if len(calls) == 3:  # (image 1, its ground truth, image 2)
            with open(file, "wb") as f:
                f.write(b"II*\0partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(file, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", fills_up)
    _sample_fails_saying(out, capsys, f"could not write {out / 'nuclei-2d_seed10001.tif'}: "
                         f"no space left on the device of {out}; free space there or write "
                         "to another folder (-o), then run the command again")
    # what was written before is whole; nothing half-written is left to be taken as done
    assert _files(out) == ["ground_truth/nuclei-2d_seed10000.tif", "nuclei-2d_seed10000.tif"]
    monkeypatch.setattr(tifffile, "imwrite", write)
    assert cli([*SAMPLE, "-o", out], capsys)[0] == 0
    assert _files(out) == _files(clean)
    assert list(md5s(*(out / f for f in _files(out))).values()) == list(
        md5s(*(clean / f for f in _files(clean))).values())


def test_a_read_only_disk_names_the_file_not_its_temporary(tmp_path, capsys, monkeypatch):
    """On a read-only file system the clean-up's unlink of the temporary (never made) failed
    with EROFS too and replaced the error: it named ``.nuclei-2d_seed10000.tif.<hex>.tmp``."""
    from pathlib import Path

    import tifffile

    def read_only(file, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(file))

    def unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(tifffile, "imwrite", read_only)
    monkeypatch.setattr(Path, "unlink", unlink)
    _sample_fails_saying(out, capsys, f"could not write {out / 'nuclei-2d_seed10000.tif'}: "
                         f"the file system of {out} is read-only; make it writable or write "
                         "to another folder (-o), then run the command again")


def test_a_checkpoint_on_a_full_disk_is_an_os_error_naming_it(tmp_path, tiny_sam, monkeypatch):
    """``torch.save`` turned the full disk into ``RuntimeError: [enforce fail at
    inline_container.cc:672] . unexpected pos 792000 vs 791888``: the CLI printed that."""
    from napari_sam.io import writers
    from napari_sam.io.write_errors import write_problem
    from napari_sam.training import checkpoint

    path = tmp_path / "m.pt"
    monkeypatch.setattr(writers, "open", lambda f, mode: FillsUp(open(f, mode), 50_000),
                        raising=False)
    with pytest.raises(OSError) as info:
        checkpoint.save_checkpoint(tiny_sam, path, {"trained_by": "napari_sam test"})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert write_problem(info.value) == (
        f"could not write {path}: no space left on the device of {tmp_path}; free space there "
        "or write to another folder (-o), then run the command again")
    assert os.listdir(tmp_path) == []  # no partial checkpoint (nor its temporary)


def test_export_onnx_on_a_full_disk_names_the_folder(tmp_path, offline_cli, tiny_model, capsys,
                                                    monkeypatch):
    pytest.importorskip("onnx")
    from napari_sam.export import onnx_export

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx_export, "_torch_export", full)
    out = tmp_path / "onnx"
    rc, _, err = cli(["export", "onnx", tiny_model, "-o", out, "-q"], capsys)
    assert rc == 1
    assert error_line(err) == (
        f"napari-sam: error: could not write {out}: no space left on the device of "
        f"{tmp_path}; free space there or write to another folder (-o), then run the command "
        "again")
    assert not out.exists() and not any(p.name.startswith(".napari-sam-export")
                                        for p in tmp_path.iterdir())


_REAL = r"""
import subprocess, sys
from napari_sam.cli import main
rc = main(["sample", "nuclei-2d", "-n", "3", "--shape", "48,48", "-q", "-o", sys.argv[1]])
sys.exit(rc)
"""


def test_sample_on_a_real_tmpfs_too_small(tmp_path):
    """The same on a real, too small tmpfs (needs root to mount one)."""
    if os.geteuid() != 0:
        print("skipped: mounting a tmpfs needs root")
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        print("skipped: mount -t tmpfs failed (no privilege in this container)")
        pytest.skip("mount -t tmpfs failed")
    try:
        run = subprocess.run([sys.executable, "-c", _REAL, str(mnt)], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        assert "no space left on the device of" in run.stderr and "could not write" in (
            run.stderr)
        assert not [p for p in mnt.rglob(".*.tmp")]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("earlier", [False, True])
def test_a_full_disk_while_the_checkpoint_metadata_is_written_leaves_no_lone_checkpoint(
        tmp_path, tiny_sam, monkeypatch, earlier):
    """The checkpoint was renamed into place before its metadata was written: the disk full
    by then, ``m.pt`` stayed without ``m.json`` (or beside the previous run's), and the same
    ``train`` command refused it for good as a file training did not write."""
    import torch

    from napari_sam.io import writers
    from napari_sam.training import checkpoint

    path = tmp_path / "m.pt"
    if earlier:  # a previous run's files, to be replaced (--overwrite)
        checkpoint.save_checkpoint(tiny_sam, path, {"trained_by": "napari_sam test"})
    before = md5s(*sorted(tmp_path.iterdir()))
    meta_tmp = checkpoint.temporary_path(tmp_path / "m.json")

    def metadata_fills_up(f, mode):
        fh = open(f, mode)
        return FillsUp(fh, 100) if str(f) == str(meta_tmp) else fh

    monkeypatch.setattr(writers, "open", metadata_fills_up, raising=False)
    with torch.no_grad():
        tiny_sam.mask_decoder.iou_prediction_head.layers[0].weight.add_(1.0)  # other weights
    with pytest.raises(OSError) as info:
        checkpoint.save_checkpoint(tiny_sam, path, {"trained_by": "napari_sam test"})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "m.json")
    assert md5s(*sorted(tmp_path.iterdir())) == before  # the earlier pair whole, or nothing
    assert not earlier or checkpoint.is_training_metadata(tmp_path / "m.json")


def test_a_refused_rename_of_the_checkpoint_metadata_names_it_not_its_temporary(
        tmp_path, tiny_sam, monkeypatch):
    """The metadata's rename had its own code in the checkpoint module, which named the error
    after the checkpoint's temporary only: a refused rename of the metadata said
    ``.m.json.tmp-HOST-PID``, a name the user never sees. Written by
    :func:`napari_sam.io.writers.write_atomic` (session 41), it names ``m.json``; nothing is
    left behind."""
    from napari_sam.training import checkpoint

    real = os.replace

    def read_only_metadata(src, dst):
        if str(dst).endswith("m.json"):
            raise OSError(errno.EROFS, "Read-only file system", str(src), str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", read_only_metadata)
    path = tmp_path / "m.pt"
    with pytest.raises(OSError) as info:
        checkpoint.save_checkpoint(tiny_sam, path, {"trained_by": "napari_sam test"})
    assert info.value.errno == errno.EROFS and info.value.filename == str(tmp_path / "m.json")
    assert os.listdir(tmp_path) == []
