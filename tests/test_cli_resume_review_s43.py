"""Resuming batch runs, reviewed (session 43): what the summary of an interrupted ``--workers``
run and the line of a blocked ``auto`` rerun say, against what the output folder holds."""

from __future__ import annotations

import re

import pytest

from cli_runner import interrupt_in, start_cli
from napari_sam import io as nio
from napari_sam.batch.jobs import output_stamp
from test_cli_resume_s43 import auto_argv, blob_folder

pytestmark = pytest.mark.usefixtures("offline_cli")


def summary_rows(said: str) -> dict[str, str]:
    """The summary table's status of each input (``done``, ``not run``...)."""
    rows = {}
    for ln in said.splitlines():
        m = re.match(r"  (done|not run|skipped) +(b\d\.tif) ", ln)
        if m:
            rows[m.group(2)] = m.group(1)
    return rows


def test_ctrl_c_with_workers_does_not_call_old_outputs_done(tmp_path, tiny_model):
    """``--overwrite --workers 2`` over complete outputs, Ctrl-C as the first job starts: the
    summary called every output it got no result for "done (finished as the run stopped)",
    also those no worker touched (still the old ones, which a rerun with --overwrite
    replaces). Only an output this run wrote is done."""
    data = blob_folder(tmp_path / "data", n=6, z=8)
    out = tmp_path / "out"
    argv = auto_argv(data, out, tiny_model, "--batch-size", "1")
    done = start_cli(argv, tmp_path)
    assert done.wait(timeout=300) == 0, done.communicate()
    before = {o.name: output_stamp(o) for o in out.glob("b*_labels.tif")}
    assert len(before) == 6

    def one_started() -> bool:
        return any((nio.read_output_metadata(o) or {}).get("status") == "partial"
                   for o in out.glob("b*_labels.tif"))

    said = interrupt_in(start_cli([*argv, "--overwrite", "--workers", "2"], tmp_path),
                        one_started)
    written = {f"b{i}.tif": "done" if output_stamp(out / f"b{i}_labels.tif")
               != before[f"b{i}_labels.tif"] else "not run" for i in range(6)}
    assert "not run" in written.values()  # (else the test needs more files)
    assert summary_rows(said) == written, said
