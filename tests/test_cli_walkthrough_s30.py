"""What a batch user met following docs/cli.md on a messy folder (helper walk-through,
session 30)."""

from __future__ import annotations

import numpy as np
import pytest

from cli_runner import cli

pytestmark = pytest.mark.usefixtures("offline_cli")


def test_a_short_stack_without_axes_metadata_says_its_first_axis_may_be_channels(
        tmp_path, tiny_model, capsys):
    """A (3, Y, X) ``.npy`` or metadata-less TIFF (channels, most likely) was segmented as a
    3-slice stack, objects linked across the channels, with no word. Now a note says how it
    was read and how to pick a channel; with ``--axes CYX --channel N`` it is one 2D image."""
    rng = np.random.default_rng(0)
    path = tmp_path / "d" / "cyx.npy"
    path.parent.mkdir()
    np.save(path, (rng.random((3, 64, 64)) * 200).astype(np.uint8))
    base = ["embed", "--model", tiny_model, "--device", "cpu"]
    rc, _, err = cli([*base, path, "-o", tmp_path / "e1"], capsys)
    assert rc == 0, err
    assert ("napari-sam: note: cyx.npy: no metadata names its axes; read as ZYX (3, 64, 64), "
            "a stack of 3 slices linked along z; if its first axis holds channels, rerun with "
            "--axes CYX --channel N") in err, err
    rc, _, err = cli([*base, path, "-o", tmp_path / "e2", "--axes", "CYX", "--channel", "1"],
                     capsys)
    assert rc == 0 and "no metadata names its axes" not in err, err


def test_every_problem_of_a_prompts_file_is_named_in_one_run(tmp_path, tiny_model, capsys):
    """A CSV with an id 0 (a row problem), a point outside the image and a slice out of
    range (problems against the stack's shape) named only the id 0; the other two came one
    run later. Now one run names all three, by line, before any work (exit code 2)."""
    import tifffile

    from cli_runner import error_line
    from stacks import blob_stack

    tifffile.imwrite(tmp_path / "s.tif", blob_stack(z=4), photometric="minisblack")
    p = tmp_path / "p.csv"
    p.write_text("id,slice,row,col\n1,1,500,20\n0,1,20,20\n2,30,20,20\n3,1,40,40\n")
    rc, _, err = cli(["segment", tmp_path / "s.tif", "-o", tmp_path / "out", "-p", p,
                      "--model", tiny_model], capsys)
    line = error_line(err)
    assert rc == 2, err
    for fragment in ("p.csv, line 3: object id 0 is not allowed",
                     "p.csv, line 2: point (row 500, col 20) lies outside the image of s.tif",
                     "p.csv, line 4: slice 30 is out of range of s.tif"):
        assert fragment in line, line
    assert not (tmp_path / "out").exists()  # before any work
    from napari_sam import batch

    with pytest.raises(batch.BatchError, match=r"line 3: object id 0 .*Prompts use napari"):
        batch.load_prompts(p)  # from Python: every bad row at once, as before for one


def test_a_tiled_images_bar_counts_encoding_and_segmenting_as_phases(tmp_path, capsys,
                                                                       monkeypatch):
    """One bar counted the windows encoded (some 35 a second) and then segmented (1-2 s
    each) as one count, so its time left said 12 s where 3.5 min were left. Each is now a
    phase of its own, from 0, with its own pace (here in the lines written for a log, one per
    count)."""
    import tifffile

    import napari_sam.batch.progress as P

    monkeypatch.setattr(P, "LOG_INTERVAL", 0.0)

    from napari_sam.models.registry import where
    from napari_sam.synthetic import nuclei_2d

    if not where("demo").is_file():
        pytest.skip("the bundled demo model is not installed")
    tifffile.imwrite(tmp_path / "big.tif", nuclei_2d((600, 600), seed=7).image)
    rc, _, err = cli(["auto", tmp_path / "big.tif", "-o", tmp_path / "out", "--threads", "1",
                      "--points-per-side", "4"], capsys)
    assert rc == 0, err
    shown = err
    lines = shown.splitlines()
    encoding = [ln for ln in lines if "big.tif: segment everything, encoding:" in ln]
    segmenting = [ln for ln in lines if "big.tif: segment everything, segmenting:" in ln]
    assert encoding and segmenting and all("/9 " in ln for ln in encoding + segmenting), shown
    assert "/18" not in shown, shown


def test_a_2d_segment_output_records_no_propagation(tmp_path, tiny_model, capsys):
    """A 2D image's sidecar said each object stopped at the stack's "edge" both ways: there
    is no propagation in 2D to report (no stop reasons, no trace); a stack's has them."""
    import json

    import tifffile

    from stacks import blob_stack

    tifffile.imwrite(tmp_path / "flat.tif", blob_stack(z=1)[0], photometric="minisblack")
    tifffile.imwrite(tmp_path / "stack.tif", blob_stack(z=3), photometric="minisblack")
    p = tmp_path / "p.csv"
    p.write_text("id,slice,row,col\n1,0,20,20\n")
    for name in ("flat", "stack"):
        rc, _, err = cli(["segment", tmp_path / f"{name}.tif", "-o", tmp_path / "out", "-p", p,
                          "--model", tiny_model, "-q"], capsys)
        assert rc == 0, err
    flat = json.loads((tmp_path / "out" / "flat_labels.tif.json").read_text())["extra"]
    stack = json.loads((tmp_path / "out" / "stack_labels.tif.json").read_text())["extra"]
    assert "stop_reasons" not in flat and "trace" not in flat, flat
    assert set(stack["stop_reasons"]) == {"1"} and "trace" in stack


def test_a_misspelt_file_in_the_prompts_names_the_input_it_may_mean(tmp_path, tiny_model,
                                                                      capsys):
    import tifffile

    from stacks import blob_stack

    tifffile.imwrite(tmp_path / "nuclei stack.tif", blob_stack(z=2), photometric="minisblack")
    p = tmp_path / "p.csv"
    p.write_text("file,id,slice,row,col\nnuclei stack.tif,1,1,20,20\n"
                 "nuclei stak.tif,2,1,44,44\n")
    rc, out, err = cli(["segment", tmp_path / "nuclei stack.tif", "-o", tmp_path / "out", "-p",
                        p, "--model", tiny_model, "-q"], capsys)
    assert rc == 0, err
    assert ("match no input and are ignored; check the 'file' column against the inputs (a "
            "misspelling? 'nuclei stak.tif' -> 'nuclei stack.tif')") in out + err, out + err


def test_the_summary_after_ctrl_c_lists_the_files_not_run(capsys):
    """After Ctrl-C the summary said "2 not run" and listed nothing (docs/cli.md: it lists
    every file)."""
    from napari_sam.batch.context import JobResult
    from napari_sam.cli.batch_command import summary

    done = JobResult("/d/a.tif", "/o/a_labels.tif", "done")
    summary([done], 3, 1.0, interrupted=True,
            names={"/d/a.tif": "a.tif", "/d/b.tif": "b.tif", "/d/c.tif": "c.tif"})
    out = capsys.readouterr().out
    assert "3 files: 1 done, 0 skipped, 0 failed, 2 not run" in out, out
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("  ")]
    assert [r[:3] for r in rows[1:]] == [["done", "a.tif", "/o/a_labels.tif"],
                                         ["not", "run", "b.tif"], ["not", "run", "c.tif"]], out


def test_a_scheduler_address_that_refuses_is_said_at_once(tmp_path, tiny_model, capsys):
    """`--scheduler` to an address where nothing listens waited dask's whole 30 s timeout
    although the connection was refused at once."""
    import socket
    import time

    import tifffile

    from cli_runner import error_line

    pytest.importorskip("distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 32, 32), np.uint16))
    t = time.monotonic()
    rc, _, err = cli(["auto", tmp_path / "a.tif", "-o", tmp_path / "out", "--model", tiny_model,
                      "--scheduler", f"tcp://127.0.0.1:{port}"], capsys)
    assert rc == 1 and time.monotonic() - t < 15
    assert (f"cannot reach a dask scheduler at tcp://127.0.0.1:{port} (the connection was "
            "refused: nothing listens there); start one there") in error_line(err), err
