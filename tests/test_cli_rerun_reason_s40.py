"""A rerun over existing outputs says why it computes one again (session 40 upgrade walk-
through): before, a replaced output's line said only "done", so a user could not tell that
their earlier output was replaced, nor why. Each test runs a command twice with one change
between and checks the reason on the file's line and the summary's count; an unchanged
rerun says skipped."""

from __future__ import annotations

import json
import re

import pytest
import tifffile

from cli_runner import cli
from napari_sam import io as nio

pytestmark = pytest.mark.usefixtures("offline_cli")


@pytest.fixture
def stack_run(tmp_path, tiny_model, capsys):
    """``segment`` of one 3-slice blob stack with one click, run once: (argv, input, output,
    prompts file). A rerun of ``argv`` unchanged skips the output."""
    from stacks import blob_stack

    inp = tmp_path / "data" / "blobs.tif"
    inp.parent.mkdir()
    tifffile.imwrite(inp, blob_stack(z=3), photometric="minisblack")
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,slice,row,col\n1,1,20,20\n")
    argv = ["segment", inp, "-o", tmp_path / "out", "-p", prompts, "--model", tiny_model]
    rc, _, err = cli(argv, capsys)
    out = tmp_path / "out" / "blobs_labels.tif"
    assert rc == 0 and out.is_file(), err
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0 and f"skipped  blobs.tif: {out} is complete" in err, err
    assert "1 file: 1 done" not in stdout and "1 skipped" in stdout, stdout
    assert "recomputed" not in err + stdout and "replaced" not in stdout
    return argv, inp, out, prompts


def rerun_reason(argv, capsys) -> str:
    """Run ``argv`` again; the reason its one file's ``done`` line gives (asserting the
    summary counts the replaced output and its table names the reason too)."""
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    line = next(x for x in err.splitlines() if x.startswith("done     blobs.tif -> "))
    reason = re.fullmatch(r"done     blobs\.tif -> \S+ \(\d+ objects?, [\d.]+ s; (.*)\)",
                          line).group(1)
    assert "1 file: 1 done (1 replaced an earlier output), 0 skipped" in stdout, stdout
    assert f"({reason})" in stdout, stdout
    return reason


def test_a_changed_parameter_is_named_with_both_values(stack_run, capsys):
    argv = stack_run[0]
    assert rerun_reason([*argv, "--min-area", "9"], capsys) == (
        "recomputed: parameters changed: min_area 5 -> 9")


def test_changed_prompts_are_named(stack_run, capsys):
    argv, _, _, prompts = stack_run
    prompts.write_text("id,slice,row,col\n1,1,24,24\n")
    assert rerun_reason(argv, capsys) == "recomputed: the prompts changed"


def test_a_changed_input_is_named(stack_run, capsys):
    from stacks import blob_stack

    argv, inp = stack_run[:2]
    tifffile.imwrite(inp, blob_stack(z=3)[::-1], photometric="minisblack")
    assert rerun_reason(argv, capsys) == "recomputed: the input changed"


def test_another_model_file_is_named(stack_run, tiny_model, tmp_path, capsys):
    import shutil

    argv = stack_run[0]
    other = tmp_path / "m2" / "other.pt"
    other.parent.mkdir()
    shutil.copy(tiny_model, other)
    shutil.copy(tiny_model.with_name("tiny.pt.json"), other.with_name("other.pt.json"))
    i = argv.index("--model")
    assert rerun_reason([*argv[:i + 1], other, *argv[i + 2:]], capsys) == (
        "recomputed: the model changed: tiny.pt -> other.pt")


def test_other_weights_at_the_same_path_are_named_by_their_ids(stack_run, capsys):
    """What an upgrade does to the bundled demo model (``demo:<sha>`` changes with the
    version): the output was made by other weights than the file holds now."""
    from napari_sam.batch.models import model_file_id, model_key

    argv, _, out, _ = stack_run
    side = nio.output_metadata_path(out)
    meta = json.loads(side.read_text())
    # weights of another day (the tiny model smooths nothing: no "+smooth" in its ids, as
    # its sidecar records no input_smoothing)
    meta["model"]["id"] = "file:000000000000"
    side.write_text(json.dumps(meta))
    now = model_file_id(model_key(str(argv[argv.index("--model") + 1])))
    assert rerun_reason(argv, capsys) == (
        f"recomputed: the model changed: file:000000000000 -> {now}")


def test_an_older_sidecar_says_what_it_lacks(stack_run, capsys):
    """Sidecars of napari-sam before the prompts were recorded: recomputed once, saying so."""
    argv, _, out, _ = stack_run
    side = nio.output_metadata_path(out)
    meta = json.loads(side.read_text())
    del meta["parameters"]["prompts"]
    side.write_text(json.dumps(meta))
    assert rerun_reason(argv, capsys) == (
        "recomputed: made by an older napari-sam whose sidecar lacks prompts")
    assert "skipped  blobs.tif" in cli(argv, capsys)[2]  # once only


def test_overwrite_says_so(stack_run, capsys):
    argv = stack_run[0]
    assert rerun_reason([*argv, "--overwrite"], capsys) == "replaced: --overwrite"


def test_auto_names_points_per_side(tmp_path, tiny_model, capsys):
    """The ``auto`` example of the docs: its parameters are named the same way."""
    from stacks import blob_stack

    inp = tmp_path / "blobs.tif"
    tifffile.imwrite(inp, blob_stack(z=2), photometric="minisblack")
    argv = ["auto", inp, "-o", tmp_path / "out", "--model", tiny_model, "--pred-iou-thresh",
            "0", "--stability-score-thresh", "0", "--points-per-side", "4"]
    assert cli(argv, capsys)[0] == 0
    err = cli(argv, capsys)[2]
    assert "skipped  blobs.tif:" in err and "recomputed" not in err
    argv[-1] = "8"
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0
    assert "recomputed: parameters changed: points_per_side 4 -> 8)" in err, err
    assert "1 done (1 replaced an earlier output)" in stdout


def test_overwrite_of_a_corrected_output_says_it_was_corrected(stack_run, capsys):
    argv, _, out, _ = stack_run
    labels = tifffile.imread(out)
    labels[0, :4, :4] = 9  # a correction by hand: kept without --overwrite
    tifffile.imwrite(out, labels)
    err = cli(argv, capsys)[2]
    assert "skipped  blobs.tif: changed since napari-sam wrote it" in err
    assert rerun_reason([*argv, "--overwrite"], capsys) == (
        "replaced: --overwrite (it was changed since napari-sam wrote it)")


def test_an_unfinished_output_is_recomputed(stack_run, capsys):
    """An output whose sidecar says "partial" (its job was killed after writing it), whose
    work folder is gone: nothing of that run is kept, so not "resumed" (it said so before
    session 43, when the words came from the sidecar, not from what the rerun kept)."""
    argv, _, out, _ = stack_run
    side = nio.output_metadata_path(out)
    side.write_text(json.dumps({**json.loads(side.read_text()), "status": "partial"}))
    assert rerun_reason(argv, capsys) == "recomputed: an earlier run did not finish it"


def test_embed_names_tiling_as_the_cli_says_it(tmp_path, tiny_model, capsys):
    """``--tiling off`` is recorded as null: the reason says ``off``, as the option does."""
    from stacks import blob_stack

    inp = tmp_path / "blobs.tif"
    tifffile.imwrite(inp, blob_stack(z=2), photometric="minisblack")
    argv = ["embed", inp, "-o", tmp_path / "out", "--model", tiny_model]
    assert cli(argv, capsys)[0] == 0
    assert "skipped  blobs.tif:" in cli(argv, capsys)[2]
    rc, stdout, err = cli([*argv, "--tiling", "off"], capsys)
    assert rc == 0
    assert "(2 slices, " in err and "s; recomputed: parameters changed: tiling auto -> off)" in err
    assert "1 done (1 replaced an earlier output)" in stdout


def test_a_removed_output_is_not_said_to_be_unfinished(stack_run, capsys):
    """An output deleted while its sidecar (status complete) stayed: the line said
    "resumed: an earlier run did not finish it" (reviewer, session 40), and nothing was
    replaced."""
    argv, _, out, _ = stack_run
    out.unlink()
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0 and out.is_file(), err
    assert "; recomputed: the output was removed (its sidecar remained))" in err, err
    assert "1 file: 1 done, 0 skipped" in stdout and "replaced" not in stdout, stdout


def test_a_sidecar_without_a_parameter_now_none_says_what_it_lacks(stack_run, capsys):
    """Sidecars of napari-sam before ``--rebound-fraction`` existed (2026-11-28) lack the key,
    which now records None: the output state said "changed" (the signatures differ) while the
    reason, re-deriving the comparison with ``None`` for a missing key, found no difference
    and said "its sidecar does not match this run" (session 41: the reason now words the
    decision's own differing keys)."""
    argv, _, out, _ = stack_run
    side = nio.output_metadata_path(out)
    meta = json.loads(side.read_text())
    assert meta["parameters"]["rebound_fraction"] is None
    del meta["parameters"]["rebound_fraction"]
    side.write_text(json.dumps(meta))
    assert rerun_reason(argv, capsys) == (
        "recomputed: made by an older napari-sam whose sidecar lacks rebound_fraction")
    assert "skipped  blobs.tif" in cli(argv, capsys)[2]  # once only
