"""One batch job checks its input once and reads it once: ``napari-sam auto`` on one TIFF
checked it 4 times (``run_job``, then ``open_image`` three times: the propagation memory
check, the slices, the labels' header) and read it 3 times. The check stays before anything
reads the input (a FIFO would hang the run): tests/test_cli_paths.py and
tests/test_cli_bad_inputs.py keep the bad inputs' errors."""

from __future__ import annotations

import collections

import pytest
import tifffile

from cli_runner import cli


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in offline_cli's surroundings (tests/conftest.py)."""


def _count_checks_and_reads(monkeypatch) -> collections.Counter:
    """Count the calls of the input check and of the image reader, per path, wherever the
    batch modules call them from."""
    import napari_sam.batch.job_checks as job_checks
    import napari_sam.batch.runners as runners
    from napari_sam import io as nio

    calls: collections.Counter = collections.Counter()
    check, read = job_checks.check_input_file, nio.read_image

    def counted_check(path):
        calls["check", str(path)] += 1
        return check(path)

    def counted_read(path, *args, **kwargs):
        calls["read", str(path)] += 1
        return read(path, *args, **kwargs)

    monkeypatch.setattr(job_checks, "check_input_file", counted_check)
    monkeypatch.setattr(runners, "check_input_file", counted_check)
    monkeypatch.setattr(nio, "read_image", counted_read)
    return calls


@pytest.mark.parametrize("extra", [[], ["--no-propagate"]], ids=["propagate", "no-propagate"])
def test_auto_checks_and_reads_its_input_once(tmp_path, tiny_model, capsys, monkeypatch, extra):
    from stacks import blob_stack

    path = tmp_path / "x.tif"
    tifffile.imwrite(path, blob_stack(z=5), photometric="minisblack")
    calls = _count_checks_and_reads(monkeypatch)
    rc, so, err = cli(["auto", path, "-o", tmp_path / "out", "--model", tiny_model,
                       "--device", "cpu", "-q", *extra], capsys)
    assert rc == 0, so + err
    assert tifffile.imread(tmp_path / "out" / "x_labels.tif").shape == (5, 64, 64)
    assert dict(calls) == {("check", str(path)): 1, ("read", str(path)): 1}


@pytest.mark.parametrize("command", ["embed", "segment"])
def test_embed_and_segment_check_their_input_once_per_job(tmp_path, tiny_model, capsys,
                                                          monkeypatch, command):
    """``embed``: once and once (it checked twice). ``segment`` also checks the prompts
    against every input's header before any work (``batch.prompts.check_prompts``, which
    checks the file itself: it runs before the jobs): twice and twice (it checked 3 times)."""
    from stacks import blob_stack

    path = tmp_path / "x.tif"
    tifffile.imwrite(path, blob_stack(z=5), photometric="minisblack")
    argv = [command, path, "-o", tmp_path / "out", "--model", tiny_model, "--device", "cpu",
            "-q"]
    if command == "segment":
        csv = tmp_path / "clicks.csv"
        csv.write_text("file,slice,row,col,label,object\nx.tif,1,20,20,1,1\n")
        argv += ["--prompts", csv]
    calls = _count_checks_and_reads(monkeypatch)
    rc, so, err = cli(argv, capsys)
    assert rc == 0, so + err
    times = 2 if command == "segment" else 1
    assert dict(calls) == {("check", str(path)): times, ("read", str(path)): times}
