"""End-to-end tests of the ``napari-sam`` command: real processes, real files in tmp.

Wiring tests use a tiny random checkpoint (fast, always available); the tests marked "demo"
use the bundled demo model and skip, saying so, while ``weights/demo.pt`` is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam import batch
from napari_sam import io as nio

HAVE_AUTO = False
try:  # segment_everything lands separately; auto tests skip until it does
    from napari_sam.automatic import segment_everything  # noqa: F401

    HAVE_AUTO = True
except ImportError:
    pass

needs_auto = pytest.mark.skipif(not HAVE_AUTO, reason="napari_sam.automatic.segment_everything "
                                                      "is not available yet")


def _demo_path() -> Path:
    from napari_sam.models.registry import where

    return where("demo")


needs_demo = pytest.mark.skipif(
    not _demo_path().is_file(),
    reason=f"the bundled demo model is not installed ({_demo_path()} missing)",
)


# ----------------------------------------------------------------------------- helpers


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env["NAPARI_SAM_CACHE_DIR"] = str(tmp / "model-cache")  # no downloaded weights
    env["PYTHONWARNINGS"] = "ignore"
    env.pop("DISPLAY", None)
    return env


def run_cli(*args, cwd: Path, timeout: float = 600, check_rc: int | None = None):
    """Run ``python -m napari_sam.cli ARGS`` (what the console script runs) in ``cwd``."""
    proc = subprocess.run(
        [sys.executable, "-m", "napari_sam.cli", *map(str, args)],
        cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=timeout,
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, (
            f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr[-4000:]}"
        )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def tiny_model(work) -> Path:
    from tiny_configs import save_tiny_cnn

    return save_tiny_cnn(work)


@pytest.fixture(scope="module")
def data(work) -> Path:
    """Two small synthetic nuclei stacks written by `napari-sam sample`, plus a corrupt TIFF."""
    proc = run_cli("sample", "nuclei-3d", "-o", "data", "-n", "2", "--shape", "6,64,64",
                   cwd=work, check_rc=0)
    images = [ln for ln in proc.stdout.splitlines() if ln.startswith("wrote")
              and ln.split()[1].endswith(".tif")]
    assert len(images) == 2 and "prompts.csv" in proc.stdout  # (+ its clicks, for segment)
    d = work / "data"
    good = sorted(d.glob("*.tif"))
    assert len(good) == 2
    raw = good[0].read_bytes()
    (d / "corrupt.tif").write_bytes(raw[: len(raw) // 2])  # truncated copy
    return d


def _prompts(work: Path) -> Path:
    p = work / "prompts.csv"
    p.write_text("file,id,slice,row,col,label,row0,col0,row1,col1\n"
                 ",1,2,30,30,1,,,,\n"
                 ",2,3,,,,5,5,25,28\n")
    return p


# ----------------------------------------------------------------------------- help and errors


def test_console_script_and_help(work):
    script = Path(sys.executable).parent / "napari-sam"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "napari_sam.cli"]
    proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, env=_env(work),
                          timeout=120)
    assert proc.returncode == 0
    for name in ("models", "sample", "embed", "auto", "segment", "train"):
        assert f"    {name} " in proc.stdout
    assert "napari-sam auto \"data/*.tif\" -o out/" in proc.stdout


@pytest.mark.parametrize("command", ["models", "sample", "embed", "auto", "segment", "train", "export"])
def test_subcommand_help_has_examples(command, capsys):
    from napari_sam.cli import main

    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: napari-sam {command}")
    assert "example" in out and f"napari-sam {command}" in out.split("example", 1)[1]
    assert max(len(line) for line in out.splitlines()) <= 100


@pytest.mark.parametrize(
    "argv, message",
    [
        (["auto"], "the following arguments are required"),
        (["auto", "x.tif", "-o", "o", "--points-per-side", "0"], "expected a number >= 1"),
        (["auto", "x.tif", "-o", "o", "--points-per-side", "dense"],
         "argument --points-per-side: expected a whole number, got 'dense'"),
        (["auto", "x.tif", "-o", "o", "--axes", "ZQX"], "invalid axes"),
        (["segment", "x.tif", "-o", "o"], "--prompts"),
        (["segment", "x.tif", "-o", "o", "-p", "p.csv", "--fade-fraction", "2"],
         "expected a number between 0 and 1"),
        (["segment", "x.tif", "-o", "o", "-p", "p.csv", "--rebound-fraction", "x"],
         "argument --rebound-fraction: expected a number, got 'x'"),
        (["sample", "nuclei-4d", "-o", "o"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        (["auto", "x.tif", "-o", "o", "--workers", "2", "--scheduler", "tcp://h:1"],
         "not allowed with argument"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    from napari_sam.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: napari-sam") and message in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


def test_our_errors_are_one_line_with_exit_codes(work, tiny_model, capsys):
    from napari_sam.cli import main

    assert main(["auto", str(work / "missing.tif"), "-o", str(work / "o")]) == 2
    err = capsys.readouterr().err
    assert "napari-sam: error: " in err and "no such file or directory" in err
    assert main(["embed", str(tiny_model), "-o", str(work / "o"), "--model", "vit_q"]) == 2
    assert "known models: demo, vit_b" in capsys.readouterr().err
    assert main(["embed", str(tiny_model), "-o", str(work / "o"), "--model", str(tiny_model),
                 "--device", "cuda:7"]) in (1, 2)
    assert "napari-sam: error: --device" in capsys.readouterr().err
    # bad prompts file: which line and why
    bad = work / "bad.csv"
    bad.write_text("id,slice,row,col\n1,0,x,1\n")
    assert main(["segment", str(tiny_model), "-o", str(work / "o"), "-p", str(bad)]) == 2
    assert "bad.csv, line 2: row must be a number" in capsys.readouterr().err


def test_subprocess_errors_have_no_traceback(work):
    proc = run_cli("segment", "nothing/*.tif", "-o", "out", "-p", "p.csv", cwd=work, check_rc=2)
    assert "napari-sam: error:" in proc.stderr and "matches no files" in proc.stderr


# ----------------------------------------------------------------------------- models


def test_models_list_where_verify(work, monkeypatch, capsys):
    from napari_sam.cli import main

    proc = run_cli("models", cwd=work, check_rc=0)  # the real command once, then in-process
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "arch", "size", "checksum", "cached", "source"]
    rows = {line.split()[0]: line.split() for line in lines[1:] if line and line.split()[0] in
            ("demo", "vit_b", "vit_h", "vit_b_lm", "vit_t", "vit_t_lm", "vit_t_em_organelles")}
    assert rows["vit_b"][2:6] == ["375.0", "MB", "sha256:ec2df6273261", "no"]
    assert rows["vit_h"][2:4] == ["2.6", "GB"]
    # MobileSAM and micro-sam's TinyViT models, with their published checksums
    assert rows["vit_t"][1:5] == ["vit_t", "40.7", "MB", "sha256:6dbb90523a35"]
    assert rows["vit_t_lm"][1:5] == ["vit_t", "~40", "MB", "xxh128:72ec50747747"]
    assert rows["vit_t_em_organelles"][1:5] == ["vit_t", "~40", "MB", "xxh128:253474720c49"]
    assert rows["demo"][4] == "packaged"
    assert f"cache folder: {work / 'model-cache'}" in proc.stdout
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(work / "model-cache"))
    assert main(["models", "where", "vit_b"]) == 0
    where = capsys.readouterr().out.strip()
    assert where == str(work / "model-cache" / "sam_vit_b_01ec64.pth")
    # a wrong file in the cache is reported, with exit code 1
    Path(where).parent.mkdir(parents=True, exist_ok=True)
    Path(where).write_bytes(b"not a checkpoint")
    assert main(["models", "verify", "vit_b"]) == 1
    out = capsys.readouterr().out  # the quick size check failed: no hashing, and it says so
    assert "vit_b: SIZE MISMATCH: wrong size (expected 375042383 bytes, found 16); not hashed" in out
    assert "CHECKSUM" not in out and "napari-sam models download vit_b" in out
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:1] == ["vit_b"] and line.split()[5:7] == ["wrong", "size"]
               for line in out.splitlines())  # there, but not counted as cached
    assert (f"note: vit_b: {where} is there but is not used: wrong size (expected 375042383 "
            "bytes, found 16)") in out
    with open(where, "r+b") as f:  # the right size (sparse), other bytes
        f.truncate(375042383)
    assert main(["models", "verify", "vit_b"]) == 1
    assert "vit_b: CHECKSUM MISMATCH: wrong checksum (its sha256 is " in capsys.readouterr().out
    Path(where).unlink()
    proc = run_cli("models", "download", "vit_b", "--url", "file:///nonexistent/sam.pth", "-q",
                   cwd=work, check_rc=1)
    assert "napari-sam: error:" in proc.stderr and where in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert main(["models", "download", "vit_q"]) == 2
    assert "unknown model 'vit_q'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- sample


def test_sample_writes_stacks_with_ground_truth(work, data):
    for path in sorted(data.glob("nuclei-3d_seed*.tif")):
        img = nio.read_image(path)
        gt = nio.read_image(data / "ground_truth" / path.name)
        assert img.axes == "ZYX" and img.data.shape == (6, 64, 64) and img.data.dtype == np.uint16
        assert gt.data.shape == (6, 64, 64) and gt.data.max() >= 1
        assert img.pixel_size[1:] == (1.0, 1.0) and img.pixel_size[0] >= 1.0
    proc = run_cli("sample", "nuclei-3d", "-o", "data", "-n", "2", "--shape", "6,64,64",
                   cwd=work, check_rc=0)
    assert proc.stdout.count("kept") == 2  # reruns keep (identical, seeded) files


# ----------------------------------------------------------------------------- segment


def _good(data: Path) -> list[Path]:
    return sorted(data.glob("nuclei-3d_seed*.tif"))


def test_segment_batch_with_bad_file_then_rerun_skips(work, data, tiny_model):
    prompts = _prompts(work)
    proc = run_cli("segment", "data", "-o", "seg", "-p", prompts, "--model", tiny_model,
                   "--preview", "--iou-threshold", "0", "--min-area", "0", cwd=work, check_rc=1)
    out = work / "seg"
    assert "Summary: 3 files: 2 done, 0 skipped, 1 failed" in proc.stdout
    failed = [line for line in proc.stdout.splitlines() if line.strip().startswith("failed")]
    assert len(failed) == 1 and "corrupt.tif" in failed[0] and "truncated" in failed[0]
    assert "FAILED   corrupt.tif" in proc.stderr
    mtimes = {}
    for inp in _good(data):
        o = out / f"{inp.stem}_labels.tif"
        img = nio.read_image(o)
        assert img.axes == "ZYX" and img.data.shape == (6, 64, 64) and img.data.dtype == np.uint16
        src = nio.read_image(inp)
        assert img.pixel_size == pytest.approx(src.pixel_size)
        assert img.metadata["user"]["command"] == "segment"
        sc = nio.read_sidecar(o)
        assert sc["status"] == "complete" and sc["input"]["path"] == str(inp.resolve())
        ids = sorted(np.unique(img.data[img.data > 0]).tolist())
        assert [ob["id"] for ob in sc["objects"]] == ids and set(ids) <= {1, 2}
        assert nio.is_complete(o, inp)
        assert (out / f"{inp.stem}_labels.png").is_file()
        mtimes[o] = o.stat().st_mtime_ns
    assert not (out / "corrupt_labels.tif").exists()
    # rerun: complete outputs are skipped, not recomputed; the bad file still fails
    proc = run_cli("segment", "data", "-o", "seg", "-p", prompts, "--model", tiny_model,
                   "--preview", "--iou-threshold", "0", "--min-area", "0", cwd=work, check_rc=1)
    assert "Summary: 3 files: 0 done, 2 skipped, 1 failed" in proc.stdout
    assert proc.stderr.count("is complete") == 2
    for o, m in mtimes.items():
        assert o.stat().st_mtime_ns == m
    # only the good files: exit code 0
    run_cli("segment", *_good(data), "-o", "seg", "-p", prompts, "--model", tiny_model,
            "--iou-threshold", "0", "--min-area", "0", "-q", cwd=work, check_rc=0)


def test_segment_stop_rules_reach_segment_volume_and_off_disables_them(work, data, tiny_model,
                                                                       monkeypatch):
    from napari_sam import volume
    from napari_sam.cli import main

    seen = []
    real = volume.segment_volume

    def spy(emb, prompts, **kw):
        seen.append({k: kw.get(k, "default")
                     for k in ("fade_fraction", "rebound_fraction", "claimed_fraction")})
        return real(emb, prompts, **kw)

    monkeypatch.setattr(volume, "segment_volume", spy)  # batch imports it when it runs
    inp = _good(data)[:1]
    args = ["segment", *map(str, inp), "-p", str(_prompts(work)), "--model", str(tiny_model), "-q"]
    assert main([*args, "-o", str(work / "rules-default")]) == 0
    assert main([*args, "-o", str(work / "rules-off"), "--fade-fraction", "off",
                 "--claimed-fraction", "0.3", "--rebound-fraction", "off"]) == 0
    assert main([*args, "-o", str(work / "rebound"), "--rebound-fraction", "0.2"]) == 0
    # left out, segment_volume's own default applies ("auto": by axis kind)
    assert seen == [
        {"fade_fraction": "default", "rebound_fraction": "default", "claimed_fraction": 0.5},
        {"fade_fraction": None, "rebound_fraction": None, "claimed_fraction": 0.3},
        {"fade_fraction": "default", "rebound_fraction": 0.2, "claimed_fraction": 0.5}]


# ----------------------------------------------------------------------------- embed


def test_embed_batch_and_reuse(work, data, tiny_model):
    proc = run_cli("embed", *_good(data), "-o", "emb", "--model", tiny_model, cwd=work,
                   check_rc=0)
    assert "2 done" in proc.stdout
    for inp in _good(data):
        store = work / "emb" / f"{inp.stem}.zarr"
        sc = nio.read_sidecar(store)
        assert sc["status"] == "complete" and sc["extra"]["slices"] == 6
        import zarr

        g = zarr.open_group(str(store), mode="r")
        assert g["features"].shape == (6, 256, 16, 16) and g["features"].dtype == np.float16
        assert (np.asarray(g["slice_hash"][:]) != 0).all()
    proc = run_cli("embed", *_good(data), "-o", "emb", "--model", tiny_model, cwd=work,
                   check_rc=0)
    assert "0 done, 2 skipped" in proc.stdout
    # `segment --embeddings emb` uses those stores instead of embedding again
    stamps = {p: p.stat().st_mtime_ns for p in (work / "emb").rglob("*") if p.is_file()}
    run_cli("segment", *_good(data), "-o", "seg-emb", "-p", _prompts(work), "--model", tiny_model,
            "--embeddings", "emb", "--keep-work", "-q", cwd=work, check_rc=0)
    for inp in _good(data):
        assert nio.is_complete(work / "seg-emb" / f"{inp.stem}_labels.tif", inp)
        assert not (work / "seg-emb" / batch.WORK_DIR / f"{inp.stem}_labels.tif"
                    / "embeddings.zarr").exists()
    assert {p: p.stat().st_mtime_ns for p in (work / "emb").rglob("*") if p.is_file()} == stamps


# ----------------------------------------------------------------------------- auto


@needs_auto
def test_auto_batch_rerun_and_preview(work, data, tiny_model):
    args = ("auto", "data", "-o", "auto", "--model", tiny_model, "--points-per-side", "4",
            "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--preview")
    proc = run_cli(*args, cwd=work, check_rc=1)
    assert "2 done, 0 skipped, 1 failed" in proc.stdout and "corrupt.tif" in proc.stdout
    outs = [work / "auto" / f"{p.stem}_labels.tif" for p in _good(data)]
    for o, inp in zip(outs, _good(data)):
        img = nio.read_image(o)
        assert img.axes == "ZYX" and img.data.shape == (6, 64, 64) and img.data.dtype == np.uint16
        sc = nio.read_sidecar(o)
        assert sc["status"] == "complete" and sc["parameters"]["points_per_side"] == 4
        assert sc["parameters"]["propagate"] is True  # the default, as segment_everything's
        if sc["objects"]:
            assert sc["extra"]["propagation"]["seeds"] >= len(sc["objects"])
        assert len(sc["objects"]) == len(np.unique(img.data)) - (img.data == 0).any()
        assert (work / "auto" / f"{inp.stem}_labels.png").is_file()
    mtimes = [o.stat().st_mtime_ns for o in outs]
    proc = run_cli(*args, cwd=work, check_rc=1)
    assert "0 done, 2 skipped, 1 failed" in proc.stdout
    assert [o.stat().st_mtime_ns for o in outs] == mtimes


def test_auto_propagate_flag_reaches_the_jobs():
    from napari_sam.cli import build_parser
    from napari_sam.cli.batch_command import batch_context as _batch_context

    for flags, expected in (([], True), (["--no-propagate"], False), (["--propagate"], True)):
        args = build_parser().parse_args(["auto", "x.tif", "-o", "o", *flags])
        assert _batch_context(args, "demo").params["propagate"] is expected


def test_segment_options_come_from_the_one_table():
    """``napari-sam segment``'s propagation options are batch.SEGMENT_OPTIONS with a flag: the
    parsed defaults are the table's and every one reaches the job's parameters, in order."""
    from napari_sam.cli import build_parser
    from napari_sam.cli.batch_command import batch_context

    args = build_parser().parse_args(["segment", "x.tif", "-o", "o", "-p", "p.csv"])
    flagged = [o for o in batch.SEGMENT_OPTIONS if o.flag is not None]
    params = batch_context(args, "demo").params
    assert list(params) == [o.name for o in flagged]
    assert all(params[o.name] == o.default for o in flagged)
    args = build_parser().parse_args(["segment", "x.tif", "-o", "o", "-p", "p.csv",
                                      "--fade-fraction", "off", "--max-slices", "3"])
    params = batch_context(args, "demo").params
    assert params["fade_fraction"] == "off" and params["max_slices"] == 3


@needs_auto
def test_sigkill_mid_file_leaves_nothing_complete(work, tiny_model):
    """SIGKILL while a stack is being segmented: no output a rerun would skip; the rerun
    reuses the slices already done and completes it."""
    d = work / "big"
    d.mkdir()
    rng = np.random.default_rng(1)
    tifffile.imwrite(d / "stack.tif", rng.integers(0, 4000, (40, 64, 64), dtype=np.uint16),
                     imagej=True, metadata={"axes": "ZYX"})
    args = ("auto", "big", "-o", "killed", "--model", tiny_model, "--points-per-side", "4",
            "--batch-size", "1")
    proc = subprocess.Popen([sys.executable, "-m", "napari_sam.cli", *map(str, args)], cwd=work,
                            env=_env(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    slices = work / "killed" / batch.WORK_DIR / "stack_labels.tif" / "auto"
    deadline = time.monotonic() + 300
    try:
        while len(list(slices.glob("z*.npz"))) < 3:
            assert proc.poll() is None, "finished before it could be killed; make the stack bigger"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    out = work / "killed" / "stack_labels.tif"
    done_before = len(list(slices.glob("z*.npz")))
    assert 3 <= done_before < 40
    assert not nio.is_complete(out, d / "stack.tif")
    assert batch.output_state(out, d / "stack.tif", {"command": "auto"}) in ("missing", "partial")
    proc = run_cli(*args, cwd=work, check_rc=0)
    assert "1 done" in proc.stdout
    sc = nio.read_sidecar(out)
    assert sc["status"] == "complete" and sc["extra"]["resumed_slices"] >= done_before
    assert nio.read_image(out).data.shape == (40, 64, 64)
    assert not (work / "killed" / batch.WORK_DIR / "stack_labels.tif").exists()


def test_sigkill_during_segment_then_rerun(work, tiny_model):
    """Killed while embedding: the partial output is never taken as complete."""
    d = work / "big2"
    d.mkdir()
    rng = np.random.default_rng(2)
    tifffile.imwrite(d / "s.tif", rng.integers(0, 4000, (60, 64, 64), dtype=np.uint16),
                     imagej=True, metadata={"axes": "ZYX"})
    p = work / "p1.csv"
    p.write_text("id,slice,row0,col0,row1,col1\n1,30,10,10,40,40\n")
    args = ("segment", "big2", "-o", "killed2", "-p", p, "--model", tiny_model,
            "--batch-size", "1")
    proc = subprocess.Popen([sys.executable, "-m", "napari_sam.cli", *map(str, args)], cwd=work,
                            env=_env(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sidecar = work / "killed2" / "s_labels.tif.json"
    deadline = time.monotonic() + 300
    try:
        while not sidecar.exists():
            assert proc.poll() is None, "finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    out = work / "killed2" / "s_labels.tif"
    assert json.loads(sidecar.read_text())["status"] == "partial"
    assert not nio.is_complete(out, d / "s.tif")
    proc = run_cli(*args, cwd=work, check_rc=0)
    assert "1 done" in proc.stdout and nio.is_complete(out, d / "s.tif")
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []


# ----------------------------------------------------------------------------- train


def test_train_writes_a_loadable_checkpoint(work, tiny_model):
    run_cli("sample", "nuclei-2d", "-o", "train", "-n", "2", "--shape", "64,64", "-q",
            cwd=work, check_rc=0)
    proc = run_cli("train", "train", "train/ground_truth", "-o", "m.pt", "--model", tiny_model,
                   "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1",
                   "--objects-per-image", "2", "--val-fraction", "0.5", "-q", cwd=work,
                   check_rc=0)
    assert "wrote m.pt" in proc.stdout
    from napari_sam.models.registry import load_model

    model = load_model(work / "m.pt")
    assert model.img_size == 128
    meta = json.loads((work / "m.json").read_text())  # the trainer's sidecar
    assert meta["config"]["encoder"] == "cnn" and meta["epochs_done"] == 1
    # existing checkpoint: refused without --overwrite
    proc = run_cli("train", "train", "train/ground_truth", "-o", "m.pt", "--model", tiny_model,
                   cwd=work, check_rc=2)
    assert "already exists" in proc.stderr


def test_train_resume_runs_one_schedule_in_pieces(work, tiny_model):
    """--resume --max-steps stops a piece and the same command continues it; the two pieces
    make the same checkpoint as one run of the same schedule."""
    import torch

    run_cli("sample", "nuclei-2d", "-o", "tr", "-n", "2", "--shape", "64,64", "-q",
            cwd=work, check_rc=0)
    common = ("train", "tr", "tr/ground_truth", "--model", tiny_model, "--epochs", "2",
              "--steps-per-epoch", "2", "--batch-size", "1", "--objects-per-image", "2",
              "--val-fraction", "0.5", "--device", "cpu", "-q")
    run_cli(*common, "-o", "whole.pt", "--resume", cwd=work, check_rc=0)
    proc = run_cli(*common, "-o", "parts.pt", "--resume", "--max-steps", "3", cwd=work,
                   check_rc=0)
    assert "run the same command again to continue" in proc.stdout
    assert (work / "parts.train-state.pt").is_file()
    proc = run_cli(*common, "-o", "parts.pt", "--resume", cwd=work, check_rc=0)
    assert "wrote parts.pt" in proc.stdout
    whole = torch.load(work / "whole.pt", weights_only=True)
    parts = torch.load(work / "parts.pt", weights_only=True)
    worst = max((whole[k].float() - parts[k].float()).abs().max().item() for k in whole)
    assert worst <= 1e-5, worst
    proc = run_cli(*common, "-o", "x.pt", "--max-steps", "3", cwd=work, check_rc=2)
    assert "add --resume" in proc.stderr


# ----------------------------------------------------------------------------- demo model


def test_no_model_at_all_is_a_clear_error(work, data, monkeypatch, capsys):
    from napari_sam import cli
    from napari_sam.models import registry

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(work / "empty-cache"))
    monkeypatch.setattr(registry, "weights_dir", lambda: work / "no-weights")
    assert cli.main(["auto", str(_good(data)[0]), "-o", str(work / "o")]) == 1
    err = capsys.readouterr().err
    assert "napari-sam: error: no model available" in err and "models download vit_b" in err


@needs_demo
@needs_auto
def test_demo_model_readme_line(tmp_path):
    """The README's main job (sample data, then auto with previews, default model = demo), on
    a smaller sample and grid so that it stays quick on 2 CPU cores."""
    run_cli("sample", "nuclei-3d", "-o", "data/", "--shape", "6,96,96", cwd=tmp_path, check_rc=0)
    args = ("auto", "data/*.tif", "-o", "out/", "--preview", "--points-per-side", "8")
    proc = run_cli(*args, cwd=tmp_path, check_rc=0)
    assert "using the bundled demo model" in proc.stderr and "models download" in proc.stderr
    out = tmp_path / "out" / "nuclei-3d_seed10000_labels.tif"
    img = nio.read_image(out)
    src = nio.read_image(tmp_path / "data" / "nuclei-3d_seed10000.tif")
    assert img.data.shape == (6, 96, 96) and img.data.dtype == np.uint16 and img.axes == "ZYX"
    assert img.pixel_size == pytest.approx(src.pixel_size)
    sc = nio.read_sidecar(out)
    assert sc["status"] == "complete" and sc["model"]["is_demo"] is True
    assert sc["model"]["name"] == "demo" and sc["parameters"]["points_per_side"] == 8
    assert [o["id"] for o in sc["objects"]] == sorted(set(np.unique(img.data).tolist()) - {0})
    assert (tmp_path / "out" / "nuclei-3d_seed10000_labels.png").is_file()
    mtime = out.stat().st_mtime_ns
    proc = run_cli(*args, cwd=tmp_path, check_rc=0)
    assert "0 done, 1 skipped" in proc.stdout and out.stat().st_mtime_ns == mtime


@needs_demo
def test_demo_model_segment_embed_train(tmp_path):
    """segment (prompts at ground-truth nuclei), embed and train with the demo model."""
    run_cli("sample", "nuclei-3d", "-o", "data", "--shape", "6,64,64", cwd=tmp_path,
            check_rc=0)
    gt = nio.read_image(tmp_path / "data" / "ground_truth" / "nuclei-3d_seed10000.tif").data
    rows = ["id,slice,row,col,label"]
    ids = [int(i) for i in np.unique(gt) if i]
    for i in ids:
        zz, yy, xx = np.nonzero(gt == i)
        z = int(np.median(zz))
        sel = zz == z
        r, c = int(np.median(yy[sel])), int(np.median(xx[sel]))
        if gt[z, r, c] != i:
            r, c = int(yy[sel][0]), int(xx[sel][0])
        rows.append(f"{i},{z},{r},{c},1")
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    proc = run_cli("segment", "data", "-o", "out", "-p", "p.csv", cwd=tmp_path, check_rc=0)
    assert "using the bundled demo model" in proc.stderr
    out = tmp_path / "out" / "nuclei-3d_seed10000_labels.tif"
    labels = nio.read_image(out).data
    assert labels.shape == gt.shape and labels.dtype == np.uint16
    assert nio.read_sidecar(out)["model"]["is_demo"] is True
    ious = [(labels == i).__and__(gt == i).sum() / max(((labels == i) | (gt == i)).sum(), 1)
            for i in ids]
    print(f"demo model, segment from one click per nucleus: mean IoU {np.mean(ious):.3f}")
    # embed: the store matches the model's embedding size
    run_cli("embed", "data", "-o", "emb", cwd=tmp_path, check_rc=0)
    sc = nio.read_sidecar(tmp_path / "emb" / "nuclei-3d_seed10000.zarr")
    assert sc["status"] == "complete" and sc["extra"]["slices"] == 6
    assert sc["model"]["is_demo"] is True
    # train: finetune the demo model for one step on the sample and its ground truth
    proc = run_cli("train", "data", "data/ground_truth", "-o", "m.pt", "--epochs", "1",
                   "--steps-per-epoch", "1", "--batch-size", "1", "--val-fraction", "0",
                   "--objects-per-image", "2", "-q",
                   cwd=tmp_path, check_rc=0)
    assert (tmp_path / "m.pt").is_file() and (tmp_path / "m.json").is_file()


def test_version_names_the_program_and_the_version(capsys):
    import napari_sam
    from napari_sam.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"napari-sam {napari_sam.__version__}"
