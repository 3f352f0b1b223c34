"""Bad inputs a demanding user gives the ``napari-sam`` command (issue #22).

Every case asserts what the user gets: the exit code, a one-line error that names the problem
and the fix, no traceback, and that no input file was modified (bytes and mtime). Most cases
run ``napari_sam.cli.main`` in-process (fast); the ones about processes run real ones. The
model is a tiny random checkpoint: none of these cases depends on segmentation quality.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from cli_runner import error_line as _error_line
from napari_sam import batch
from napari_sam import io as nio
from napari_sam.batch.prompts import CSV_ALIASES

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def _stack(path: Path, shape=(3, 64, 64), seed=0, compression=None, **kw) -> Path:
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) * 1000).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    kw.setdefault("photometric", "minisblack")
    tifffile.imwrite(path, data, compression=compression, **kw)
    return path


def _state(*paths: Path) -> dict:
    """Bytes hash and mtime of every file under ``paths`` (to prove nothing was modified)."""
    out = {}
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            out[str(f)] = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    return out


def _run(*args, cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, NAPARI_SAM_CACHE_DIR=str(cwd / "model-cache"), OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "napari_sam.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600, **kw)


# ----------------------------------------------------------------------------- resume


def test_rerun_over_a_replaced_input_with_same_size_and_mtime_recomputes(tmp_path, tiny_model,
                                                                          capsys):
    inp = _stack(tmp_path / "data" / "a.tif", seed=0)
    out = tmp_path / "out"
    rc, _, err = cli(["embed", inp, "-o", out, "--model", tiny_model], capsys)
    assert rc == 0 and "done     a.tif" in err
    sc = nio.read_sidecar(out / "a.zarr")
    assert sc["input"]["sample_hash"] == nio.content_sample_hash(inp)
    rc, _, err = cli(["embed", inp, "-o", out, "--model", tiny_model], capsys)
    assert rc == 0 and "skipped  a.tif" in err  # unchanged: skipped
    st = inp.stat()
    _stack(inp, seed=1)  # other data, same size ...
    os.utime(inp, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the same mtime
    assert inp.stat().st_size == st.st_size and inp.stat().st_mtime_ns == st.st_mtime_ns
    assert not nio.is_complete(out / "a.zarr", inp)
    rc, _, err = cli(["embed", inp, "-o", out, "--model", tiny_model], capsys)
    assert rc == 0 and "done     a.tif" in err  # recomputed, not the stale output
    assert nio.read_sidecar(out / "a.zarr")["input"]["sample_hash"] == nio.content_sample_hash(inp)


def test_content_sample_hash_sees_a_change_in_a_large_file(tmp_path):
    p = tmp_path / "big.bin"
    data = bytearray(os.urandom(3 << 20))
    p.write_bytes(bytes(data))
    h0 = nio.content_sample_hash(p)
    data[-10] ^= 0xFF  # the last block is always sampled
    p.write_bytes(bytes(data))
    assert nio.content_sample_hash(p) != h0


def test_content_sample_hash_of_a_folder_sees_a_rewritten_file(tmp_path):
    """A zarr store's own mtime does not change when a chunk file is rewritten: a folder's
    hash is over its files' names, sizes and mtimes."""
    store = tmp_path / "raw.zarr"
    (store / "0").mkdir(parents=True)
    chunk = store / "0" / "0.0"
    chunk.write_bytes(b"a" * 100)
    h0 = nio.content_sample_hash(store)
    assert h0 is not None and nio.content_sample_hash(store) == h0
    os.utime(chunk, ns=(1, 1))  # rewritten: same size, another time stamp
    assert nio.content_sample_hash(store) != h0


def test_finished_run_leaves_no_lock_files(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    out = tmp_path / "out"
    rc, _, _ = cli(["embed", inp, "-o", out, "--model", tiny_model, "-q"], capsys)
    assert rc == 0
    assert not (out / batch.WORK_DIR).exists()  # no locks/ and no work folder left
    assert sorted(p.name for p in out.iterdir()) == ["a.zarr", "a.zarr.json"]


# ----------------------------------------------------------------------------- image files


def test_complex_npy_is_refused_with_the_fix(tmp_path, tiny_model, capsys):
    inp = tmp_path / "c.npy"
    np.save(inp, (np.ones((2, 32, 32)) + 1j).astype(np.complex64))
    before = _state(inp)
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 1
    assert "FAILED   c.npy" in err and "complex numbers" in err and "numpy.abs" in err
    assert "TypeError" not in err
    assert _state(inp) == before


def test_tiff_with_a_corrupted_zlib_strip(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "z.tif", compression="zlib")
    with tifffile.TiffFile(inp) as t:
        off, cnt = t.pages[1].dataoffsets[0], t.pages[1].databytecounts[0]
    raw = bytearray(inp.read_bytes())
    for i in range(off + 10, off + cnt - 10):
        raw[i] = (raw[i] * 7 + 3) & 255
    inp.write_bytes(bytes(raw))
    before = _state(inp)
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 1
    # zlib's error, or libdeflate's where imagecodecs decodes (a dependency now)
    assert ("slice 1 could not be decoded (zlib.error" in err
            or "slice 1 could not be decoded (DeflateError" in err), err
    assert "copy or export it again" in err
    assert _state(inp) == before
    assert not (tmp_path / "out" / "z.zarr").exists()


def test_truncated_tiff_prints_no_stray_tifffile_line(tmp_path, tiny_model, capsys):
    good = _stack(tmp_path / "g.tif", compression="zlib")
    raw = good.read_bytes()
    inp = tmp_path / "t.tif"
    inp.write_bytes(raw[: len(raw) // 2])
    good.unlink()
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 1 and "the file is truncated" in err and "copy or export it again" in err
    assert not any(line.startswith("<tifffile") for line in err.splitlines())  # its log line
    assert all(line.startswith(("FAILED", "napari-sam:", "Summary", "  ", "1 file")) or not line
               for line in err.splitlines()), err


def test_zero_size_image(tmp_path, tiny_model, capsys):
    inp = tmp_path / "empty.npy"
    np.save(inp, np.zeros((0, 64, 64), np.uint8))
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 1 and "the image is empty (shape (0, 64, 64))" in err


def test_one_dimensional_npy_asks_for_axes(tmp_path, tiny_model, capsys):
    inp = tmp_path / "line.npy"
    np.save(inp, np.arange(100, dtype=np.float32))
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 1 and "expected 2 to 5 dimensions" in err and "--axes" in err


def test_file_that_is_not_an_image(tmp_path, tiny_model, capsys):
    png = tmp_path / "photo.czi"  # (PNG and JPEG pictures are read since session 32)
    png.write_bytes(b"ZISRAWFILE" + b"\0" * 64)
    txt = tmp_path / "notes.tif"
    txt.write_text("not an image\n")
    before = _state(png, txt)
    rc, _, err = cli(["embed", png, txt, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 1
    assert ".czi is not a supported image type" in err and "Save As > Tiff" in err
    assert "notes.tif" in err and "not a readable TIFF file" in err
    assert _state(png, txt) == before


def test_unreadable_file_names_permissions(tmp_path, tiny_model, capsys, monkeypatch):
    inp = _stack(tmp_path / "secret.tif")
    if os.geteuid() != 0:  # a real unreadable file
        inp.chmod(0)
    else:  # root reads everything: let os.access say what it says for other users
        real = os.access
        monkeypatch.setattr(os, "access",
                            lambda p, mode: False if Path(p) == inp else real(p, mode))
    try:
        rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    finally:
        inp.chmod(0o644)
    assert rc == 1 and "secret.tif': permission denied" in err and "chmod +r" in err


def test_directory_given_as_a_file(tmp_path, tiny_model, capsys):
    d = tmp_path / "stack.tif"
    d.mkdir()
    rc, _, err = cli(["embed", d, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 2 and "holds no images" in _error_line(err)
    inp = _stack(tmp_path / "a.tif")
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", d, "--model", tiny_model],
                     capsys)
    assert rc == 2 and "is a directory; give the .csv or .json file" in _error_line(err)


def test_stack_with_two_channels_needs_channel(tmp_path, tiny_model, capsys):
    inp = tmp_path / "zcyx.tif"
    data = (np.random.default_rng(0).random((2, 2, 48, 48)) * 1000).astype(np.uint16)
    tifffile.imwrite(inp, data, imagej=True, metadata={"axes": "ZCYX"})
    before = _state(inp)
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 1 and "has 2 channels" in err and "--channel N" in err
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model,
                      "--channel", "1"], capsys)
    assert rc == 0 and "done     zcyx.tif" in err and "(2 slices" in err
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out2", "--model", tiny_model,
                      "--channel", "5"], capsys)
    assert rc == 1 and "channel=5 is out of range: 2 channels, give 0..1" in err
    assert _state(inp) == before


def test_time_and_z_with_channels_5d(tmp_path, tiny_model, capsys):
    inp = tmp_path / "tzcyx.tif"
    data = np.zeros((2, 3, 2, 32, 32), np.uint8)
    tifffile.imwrite(inp, data, imagej=True, metadata={"axes": "TZCYX"})
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model,
                      "--channel", "0"], capsys)
    assert rc == 1 and "both a time axis (T=2) and a Z axis (Z=3)" in err
    assert "one time point (or one Z slice) per file" in err and "--axes" in err


def test_axes_that_do_not_fit_the_file(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model,
                      "--axes", "TZYX"], capsys)
    assert rc == 1 and "Invalid axes 'TZYX' for data of shape (3, 64, 64)" in err
    assert "it has 4 letters but the data has 3 dimensions" in err and "'ZYX'" in err


def test_rgb_stack_is_segmented_as_rgb(tmp_path, tiny_model, capsys):
    inp = tmp_path / "rgb.tif"
    data = (np.random.default_rng(0).random((3, 48, 48, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(inp, data, photometric="rgb")
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 0 and "done     rgb.tif" in err and "(3 slices" in err


# ----------------------------------------------------------------------------- inputs


def test_missing_input_glob_and_empty_folder(tmp_path, tiny_model, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(["auto", tmp_path / "nothing" / "*.tif", tmp_path / "empty", "-o",
                      tmp_path / "out", "--model", tiny_model], capsys)
    line = _error_line(err)
    assert rc == 2 and "matches no files" in line and "holds no images" in line
    assert "--recursive" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_output_that_would_replace_its_input(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    before = _state(inp)
    rc, _, err = cli(["auto", inp, "-o", tmp_path, "--suffix", "", "--model", tiny_model],
                     capsys)
    assert rc == 2 and "would replace its own input; choose another -o" in _error_line(err)
    assert _state(inp) == before


def test_foreign_file_at_the_output_path_is_kept(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "a_labels.tif"
    mine.write_bytes(b"my own labels")
    before = _state(inp, mine)
    rc, _, err = cli(["auto", inp, "-o", out, "--model", tiny_model], capsys)
    assert rc == 1 and "was not written by napari-sam (no a_labels.tif.json" in err
    assert _state(inp, mine) == before


# ----------------------------------------------------------------------------- output folder


def test_output_that_is_an_existing_file(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    before = _state(inp, target)
    rc, _, err = cli(["embed", inp, "-o", target, "--model", tiny_model], capsys)
    line = _error_line(err)
    assert rc == 2 and "existing file, not a folder" in line and "-o out/" in line
    assert "Errno 17" not in err and "FAILED" not in err
    assert _state(inp, target) == before


def _read_only(folder: Path) -> bool:
    """Make ``folder`` read-only for this process (chmod; as root, the immutable flag)."""
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return True
    r = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    return r.returncode == 0


def _writable(folder: Path) -> None:
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_output_on_a_read_only_folder(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    ro = tmp_path / "ro"
    ro.mkdir()
    if not _read_only(ro):
        _writable(ro)
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    try:
        for out in (ro, ro / "sub"):
            rc, _, err = cli(["embed", inp, "-o", out, "--model", tiny_model], capsys)
            line = _error_line(err)
            assert rc == 2 and "cannot write there" in line and "folder you can write to" in line
    finally:
        _writable(ro)
    assert list(ro.iterdir()) == []


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "vit_q"], "known models: demo, vit_b"),
        (["--device", "quantum"], "--device"),
        (["--block-slices", "8"], "--block-slices splits stacks between the workers"),
        (["--suffix", "sub/x"], "--suffix 'sub/x': no folders in the suffix"),
        (["--embeddings", "no-such-folder"], "--embeddings no-such-folder: no such folder"),
    ],
)
def test_bad_options_exit_2_before_any_work(tmp_path, tiny_model, capsys, monkeypatch, extra,
                                            message):
    monkeypatch.chdir(tmp_path)
    inp = _stack(tmp_path / "a.tif")
    args = ["auto", inp, "-o", tmp_path / "out"]
    if "--model" not in extra:
        args += ["--model", tiny_model]
    rc, _, err = cli(args + extra, capsys)
    assert rc == 2 and message in _error_line(err)
    assert not (tmp_path / "out" / "a_labels.tif").exists()


def test_model_file_that_is_not_a_checkpoint(tmp_path, capsys):
    inp = _stack(tmp_path / "a.tif")
    fake = tmp_path / "weights.pt"
    fake.write_text("this is not a checkpoint\n")
    before = _state(inp, fake)
    rc, _, err = cli(["auto", inp, tmp_path / "a.tif", "-o", tmp_path / "out", "--model", fake],
                     capsys)
    line = _error_line(err)
    assert rc == 2 and "cannot load it as a model" in line and "give a SAM checkpoint" in line
    assert "FAILED" not in err  # one error, not one per file
    assert _state(inp, fake) == before


def test_conflicting_cluster_flags(tmp_path, capsys):
    rc, _, err = cli(["auto", "x.tif", "-o", tmp_path, "--workers", "2", "--scheduler",
                      "tcp://h:1"], capsys)
    assert rc == 2 and "not allowed with argument" in err


# ----------------------------------------------------------------------------- prompts


CSV_CASES = {
    "point outside the image": ("id,slice,row,col\n1,1,10,10\n1,1,70,10\n",
                                "p.csv, line 3: point (row 70, col 10) lies outside the image "
                                "of a.tif (3 slices 0-2 of 64 x 64 pixels)"),
    "slice out of range": ("id,slice,row,col\n1,9,10,10\n",
                           "p.csv, line 2: slice 9 is out of range of a.tif (3 slices 0-2"),
    "box outside": ("id,slice,row0,col0,row1,col1\n1,0,80,80,90,90\n",
                    "p.csv, line 2: box [80.0, 80.0, 90.0, 90.0] lies outside the image"),
    "id 0": ("id,slice,row,col\n0,1,10,10\n", "p.csv, line 2: object id 0 is not allowed"),
    "negative id": ("id,slice,row,col\n-2,1,10,10\n", "p.csv, line 2: object id -2 is not "
                                                     "allowed"),
    "label 7": ("id,slice,row,col,label\n1,1,10,10,7\n",
                "p.csv, line 2: label 7 is not allowed: a point's label is 1"),
    "no point or box": ("id,slice,row,col\n1,1,,\n", "p.csv, line 2: the prompt has no point"),
    "unknown column": ("id,slice,row,col,colour\n1,1,10,10,red\n", "unknown column ['colour']"),
    "empty file": ("", "is empty; the first line names the columns"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_prompts_csv_errors_exit_2_with_file_and_line_before_embedding(tmp_path, tiny_model,
                                                                       capsys, case):
    text, message = CSV_CASES[case]
    inp = _stack(tmp_path / "a.tif")
    p = tmp_path / "p.csv"
    p.write_text(text)
    before = _state(inp, p)
    t0 = time.perf_counter()
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", p, "--model", tiny_model],
                     capsys)
    assert rc == 2 and message in _error_line(err)
    assert err.startswith("usage: napari-sam segment --help")
    assert not (tmp_path / "out" / batch.WORK_DIR).exists()  # no embedding was computed
    assert time.perf_counter() - t0 < 60
    assert _state(inp, p) == before


def test_prompt_on_slice_1_of_a_2d_image(tmp_path, tiny_model, capsys):
    inp = tmp_path / "flat.tif"
    tifffile.imwrite(inp, np.zeros((64, 64), np.uint16))
    p = tmp_path / "p.csv"
    p.write_text("id,slice,row,col\n1,1,5,5\n")
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", p, "--model", tiny_model],
                     capsys)
    assert rc == 2 and ("p.csv, line 2: slice 1 is out of range (a 2D image has only slice 0) "
                        "of flat.tif") in _error_line(err)


def test_prompts_csv_column_aliases_are_accepted_and_documented(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    p = tmp_path / "p.csv"
    p.write_text("image,object,z,y,x,positive\na.tif,1,1,30,30,1\n")
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", p, "--model", tiny_model,
                      "-q"], capsys)
    assert rc == 0, err
    docs = (REPO / "docs" / "cli.md").read_text()
    for alias, column in CSV_ALIASES.items():
        assert f"`{alias}`" in docs, f"alias {alias} -> {column} is not in docs/cli.md"


def test_prompts_file_not_utf8(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    p = tmp_path / "p.csv"
    p.write_bytes("file,id,slice,row,col\nmaße.tif,1,1,3,3\n".encode("latin-1"))
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", p, "--model", tiny_model],
                     capsys)
    line = _error_line(err)
    assert rc == 2 and "is not UTF-8 text (byte 0xdf on line 2)" in line and "CSV UTF-8" in line


def test_prompts_json_malformed(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    p = tmp_path / "p.json"
    cases = {
        '{"objects": {"1": [{"slice": 1, "points": [[3, 3]]}]': "is not valid JSON",
        '{"objects": {"1": [{"slice": 1, "point": [[3, 3]]}]}}':
            "p.json, object 1, prompt 1: unknown key ['point']",
        '{"objects": {"0": [{"slice": 1, "points": [[3, 3]]}]}}': "object id 0 is not allowed",
        '{"objects": {"1": [{"slice": 1, "points": [[3, 3]], "labels": [2]}]}}':
            "label 2 is not allowed",
        '{"objects": {"1": [{"slice": 1, "box": [1, 2, 3]}]}}': "box must be 4 numbers",
        '{"objects": {"1": [{"slice": 7, "points": [[3, 3]]}]}}':
            "p.json, object 1, prompt 1: slice 7 is out of range of a.tif",
        '[1, 2]': "item 0 must be an object",
    }
    for text, message in cases.items():
        p.write_text(text)
        rc, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", p, "--model",
                          tiny_model], capsys)
        assert rc == 2 and message in _error_line(err), (text, err)


def test_prompts_for_files_that_are_not_inputs(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    p = tmp_path / "p.csv"
    p.write_text("file,id,slice,row,col\nother.tif,1,1,3,3\n")
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", p, "--model", tiny_model],
                     capsys)
    line = _error_line(err)
    assert rc == 2 and "no prompts apply to any input" in line and "'other.tif'" in line
    assert "leave 'file' empty" in line
    # some prompts match: the others are named in a note, the run goes on
    p.write_text("file,id,slice,row,col\na.tif,1,1,30,30\nother.tif,1,1,3,3\n")
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", p, "--model", tiny_model,
                      "-q"], capsys)
    assert rc == 0
    assert "prompts for ['other.tif'] (p.csv, line 3) match no input and are ignored" in err


# ----------------------------------------------------------------------------- processes


def test_output_busy_in_another_process_is_waited_for(tmp_path, tiny_model, capsys):
    inp = _stack(tmp_path / "a.tif")
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from napari_sam.batch import OutputLock\n"
         f"lock = OutputLock(Path({str(out / 'a.zarr')!r}))\n"
         "assert lock.__enter__()\nprint('locked', flush=True)\ntime.sleep(3)\n"
         "lock.__exit__(None, None, None)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, _, err = cli(["embed", inp, "-o", out, "--model", tiny_model], capsys)
    finally:
        holder.wait(timeout=60)
    assert f"another napari-sam process (pid {holder.pid}) is writing" in err
    assert "waiting  a.tif" in err
    assert rc == 0 and "done     a.tif" in err and nio.is_complete(out / "a.zarr", inp)


def test_busy_output_on_a_cluster_is_not_a_success(tmp_path, capsys):
    from napari_sam.cli.batch_command import print_result as _print_result
    from napari_sam.cli.batch_command import summary as _summary

    inp = _stack(tmp_path / "a.tif")
    ctx = batch.Context(command="embed", model="demo", out_dir=tmp_path / "out")
    job = batch.make_jobs([inp], ctx)[0]
    job.output.parent.mkdir()
    with batch.OutputLock(job.output) as got:
        assert got
        res = batch.run_job(job, ctx)
    assert res.status == "busy" and not res.ok and f"pid {os.getpid()}" in res.reason
    _print_result(res, quiet=False)
    _summary([res], 1, 0.1)
    out, err = capsys.readouterr()
    assert "BUSY     a.tif" in err
    assert "1 busy in another process" in out and "rerun the same command when it has finished" in out


def test_two_processes_on_one_output_folder_do_every_file_once(tmp_path, tiny_model):
    for i in range(3):
        _stack(tmp_path / "data" / f"s{i}.tif", seed=i)
    before = _state(tmp_path / "data")
    env = dict(os.environ, NAPARI_SAM_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "napari_sam.cli", "embed", "data", "-o", "out", "--model",
           str(tiny_model)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    done = sum(err.count("done     s") for _, err in outs)
    skipped = sum(err.count("skipped  s") for _, err in outs)
    assert done == 3 and skipped == 3  # each file computed once, the other process skipped it
    for i in range(3):
        assert nio.is_complete(tmp_path / "out" / f"s{i}.zarr", tmp_path / "data" / f"s{i}.tif")
    assert not (tmp_path / "out" / batch.WORK_DIR).exists()
    assert _state(tmp_path / "data") == before


# ----------------------------------------------------------------------------- repository


def test_sample_data_folder_is_git_ignored():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "check-ignore", "-q", "data/nuclei-3d_seed10000.tif"], cwd=REPO)
    assert r.returncode == 0, "data/ (written by `napari-sam sample ... -o data/`) is not ignored"


@pytest.mark.parametrize("compression", ["lzw", "jpeg"])
def test_lzw_and_jpeg_compressed_tiffs_are_read(tmp_path, tiny_model, capsys, compression):
    """LZW (Photoshop, Pillow, many microscope exports) and JPEG in TIFF were refused as
    "damaged": their codecs come with imagecodecs, which was not installed with us. An LZW
    stack (lossless) gives the labels of its uncompressed copy."""
    rng = np.random.default_rng(0)
    data = (rng.random((3, 64, 64)) * 255).astype(np.uint8)
    plain, packed = tmp_path / "plain.tif", tmp_path / f"{compression}.tif"
    tifffile.imwrite(plain, data, photometric="minisblack")
    tifffile.imwrite(packed, data, photometric="minisblack", compression=compression)
    before = _state(packed)
    outs = {}
    for inp in (plain, packed):
        rc, text, err = cli(["auto", inp, "-o", tmp_path / "out", "--model", tiny_model,
                             "--points-per-side", "4", "-q"], capsys)
        assert rc == 0 and "could not be decoded" not in err, err
        outs[inp] = tifffile.imread(tmp_path / "out" / f"{inp.stem}_labels.tif")
    assert outs[packed].shape == data.shape
    if compression == "lzw":
        assert np.array_equal(outs[packed], outs[plain])
    assert _state(packed) == before


def test_a_codec_package_that_is_missing_is_named(tmp_path, tiny_model, capsys, monkeypatch):
    """Without imagecodecs (a partial install) an LZW TIFF was called damaged, with the
    advice to copy or export it again; the message now names the package to install."""
    import types

    import tifffile.tifffile as tt

    inp = tmp_path / "lzw.tif"
    tifffile.imwrite(inp, np.zeros((3, 32, 32), np.uint8), photometric="minisblack",
                     compression="lzw")
    monkeypatch.setattr(tt, "imagecodecs", types.SimpleNamespace())  # no codec in it
    monkeypatch.setattr(tt.TIFF.DECOMPRESSORS, "_codecs", {})
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 1
    assert "requires the 'imagecodecs' package" in err
    assert ("compressed with a codec that needs the Python package imagecodecs, which is not "
            "installed: `pip install imagecodecs`") in err
    assert "damaged" not in err
    with pytest.raises(nio.ImageReadError, match=r"requires the 'imagecodecs' package.*"
                       r"needs the Python package imagecodecs, which is not installed: `pip "
                       r"install imagecodecs`"):  # read at once (training, lazy=False)
        nio.read_image(inp, lazy=False)


def _hyperstack(path: Path, n_channels: int) -> Path:
    """An ImageJ hyperstack (Z, C, Y, X) of ``n_channels`` fluorescence channels: bright
    discs in the last channel only, the others empty."""
    yy, xx = np.mgrid[:64, :64]
    disc = ((yy - 32) ** 2 + (xx - 30) ** 2 < 100).astype(np.uint8) * 200
    data = np.zeros((3, n_channels, 64, 64), np.uint8)
    data[:, -1] = disc
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    return path


def test_four_declared_channels_are_not_read_as_rgba(tmp_path, tiny_model, capsys):
    """An ImageJ hyperstack of 4 fluorescence channels was read as RGBA: the 4th channel
    (here the nuclei) was dropped as alpha, and auto said "0 objects" with exit code 0."""
    inp = _hyperstack(tmp_path / "four.tif", 4)
    before = _state(inp)
    rc, text, err = cli(["auto", inp, "-o", tmp_path / "out", "--model", tiny_model,
                         "--points-per-side", "4"], capsys)
    assert rc == 1
    assert ("four.tif: The file has 4 channels (axes ZCYX, shape (3, 4, 64, 64)), named as "
            "channels by its metadata, not as the colour samples of an RGBA image; pick one "
            "channel with --channel N (0 to 3)") in text + err
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "emb", "--model", tiny_model,
                      "--axes", "ZCYX"], capsys)  # the user names the axis: RGBA, said
    assert rc == 0 and ("four.tif: its 4 channels (axes ZCYX) are read as the red, green, blue "
                        "and alpha of a colour image: the 4th is not used; to segment one "
                        "channel, rerun with --channel N (0 to 3)") in err, err
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "out", "--model", tiny_model,
                      "--points-per-side", "4", "--channel", "3", "-q"], capsys)
    assert rc == 0, err
    assert tifffile.imread(tmp_path / "out" / "four_labels.tif").shape == (3, 64, 64)
    assert _state(inp) == before


def test_three_declared_channels_read_as_colour_say_so(tmp_path, tiny_model, capsys):
    three = _hyperstack(tmp_path / "three.tif", 3)
    rgb = tmp_path / "rgb.tif"  # colour samples (axes ZYXS): no note
    tifffile.imwrite(rgb, np.moveaxis(tifffile.imread(three), 1, -1), photometric="rgb")
    rc, _, err = cli(["embed", three, rgb, "-o", tmp_path / "out", "--model", tiny_model],
                     capsys)
    assert rc == 0, err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert notes == [
        "napari-sam: note: three.tif: its 3 channels (axes ZCYX) are read as the red, green and "
        "blue of a colour image; to segment one channel (e.g. the nuclei's), rerun with "
        "--channel N (0 to 2)"], err


def test_a_multi_series_tiff_says_only_its_first_series_is_segmented(tmp_path, tiny_model,
                                                                     capsys):
    """A multi-position OME-TIFF (one series per stage position): only series 0 was
    segmented, with exit code 0 and not a word about the others."""
    inp = tmp_path / "positions.ome.tif"
    rng = np.random.default_rng(0)
    with tifffile.TiffWriter(inp, ome=True) as tw:
        for shape in ((4, 48, 48), (4, 48, 48), (2, 32, 40)):
            tw.write(rng.integers(0, 255, shape, np.uint8), metadata={"axes": "ZYX"})
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 0, err
    assert ("napari-sam: note: positions.ome.tif: the file holds 3 image series; only the "
            "first (ZYX (4, 48, 48)) is segmented, not the others (ZYX (4, 48, 48), ZYX (2, 32, "
            "40)); to segment them, save each series as a file of its own") in err
    single = tmp_path / "one.tif"
    tifffile.imwrite(single, rng.integers(0, 255, (3, 48, 48), np.uint8),
                     photometric="minisblack")
    rc, _, err = cli(["embed", single, "-o", tmp_path / "out2", "--model", tiny_model], capsys)
    assert rc == 0 and "image series" not in err


@pytest.mark.parametrize("shape, hint", [((2, 6, 48, 48), "--axes CZYX --channel N"),
                                         ((6, 2, 48, 48), "--axes ZCYX --channel N")])
def test_a_plain_4d_tiff_says_its_axes_were_guessed_and_how_to_name_channels(
        tmp_path, tiny_model, capsys, shape, hint):
    """A 4D TIFF without axes metadata (2 channels) was refused as having "both a time axis
    and a Z axis", which the file never said, without naming --axes CZYX --channel N."""
    inp = tmp_path / "plain4d.tif"
    tifffile.imwrite(inp, np.random.default_rng(0).integers(0, 4095, shape, np.uint16))
    rc, text, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 1
    said = text + err
    assert (f"no metadata names the axes of its shape {shape}; read as TZYX (a guess from the "
            "shape): The data has both a time axis") in said, said
    assert f"If an axis holds channels, say so: {hint}" in said
    axes = hint.split()[1]
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out", "--model", tiny_model, "--axes",
                      axes, "--channel", "1", "-q"], capsys)
    assert rc == 0, err


def _segment_with_slice_1(tmp_path, tiny_model, capsys, name, dtype, fill):
    """``segment`` of a 3-slice ``name``.tif whose slice 1 is all ``fill``, prompted on slices
    0 and 1: (rc, stderr in one line, the output metadata)."""
    data = (np.random.default_rng(0).random((3, 64, 64)) * 1000).astype(dtype)
    data[1] = fill
    inp = tmp_path / f"{name}.tif"
    tifffile.imwrite(inp, data, photometric="minisblack")
    p = tmp_path / "p.csv"
    p.write_text("id,slice,row,col\n1,0,30,30\n2,1,20,20\n")
    rc, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", p, "--model", tiny_model],
                     capsys)
    meta = tmp_path / "out" / f"{name}_labels.tif.json"
    return rc, " ".join(err.split()), json.loads(meta.read_text()) if meta.is_file() else None


def test_a_prompt_on_a_constant_slice_is_noted_in_the_run_and_the_metadata(tmp_path, tiny_model,
                                                                         capsys):
    """A blank frame (or the wrong channel) gave masks that follow the clicks alone, without a
    word (helper walk-through, session 28): the run and the output metadata name the slices."""
    rc, err, meta = _segment_with_slice_1(tmp_path, tiny_model, capsys, "a", np.uint16, 0)
    assert rc == 0, err
    assert ("a.tif: prompted slice 1 is constant (every pixel 0): the masks there follow the "
            "prompts alone, not the image") in err
    assert meta["extra"]["constant_prompt_slices"] == {"1": [0.0]}

    flat = tmp_path / "flat.tif"  # a 2D image, and one with structure: nothing said
    tifffile.imwrite(flat, np.full((64, 64), 7, np.uint16))
    p = tmp_path / "p.csv"
    p.write_text("id,slice,row,col\n1,0,30,30\n")
    for name, says in (("flat", "flat.tif: the image is constant (every pixel 7)"),
                       ("a", None)):
        src = flat if name == "flat" else _stack(tmp_path / "b" / "a.tif")
        rc, _, err = cli(["segment", src, "-o", tmp_path / f"out_{name}", "-p", p, "--model",
                          tiny_model], capsys)
        assert rc == 0, err
        assert (says in " ".join(err.split())) if says else "(every pixel" not in err
        meta = json.loads((tmp_path / f"out_{name}" / f"{name}_labels.tif.json").read_text())
        assert ("constant_prompt_slices" in meta["extra"]) == bool(says)


def test_a_prompt_on_an_all_nan_slice_is_noted_and_the_metadata_written(tmp_path, tiny_model,
                                                                          capsys):
    """NaN went into the output metadata, which JSON cannot hold: the file failed with "Out
    of range float values are not JSON compliant" and its labels had no metadata (the
    reviewer, session 29)."""
    rc, err, meta = _segment_with_slice_1(tmp_path, tiny_model, capsys, "nan", np.float32,
                                          np.nan)
    assert rc == 0, err
    assert "nan.tif: prompted slice 1 is constant (no pixel holds a finite value)" in err
    assert meta["extra"]["constant_prompt_slices"] == {"1": [None]}
