"""What a user meets on the command line after the s20 review of the SAM 2 paths: reruns after
the prompts or the checkpoint changed, SAM 1-only options given with a SAM 2.1 model, the
device line of a SAM 2 run, ``--method sam2`` without ``--model``, ``report`` of a zarr
output and the direction of a trace's area flag.

Every case asserts the exit code, the line the user reads and the files written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cli_runner import cli, error_line
from sam2_checkpoint import save_sam2_checkpoint

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def _stack(path: Path, seed=0, shape=(4, 40, 48)) -> Path:
    rng = np.random.default_rng(seed)
    stack = rng.integers(0, 3000, shape).astype(np.uint16)
    stack[:, 8:30, 10:34] += 4000
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    return path


def _other_weights(src: Path, dst: Path, seed: int) -> Path:
    """A checkpoint of ``src``'s architecture with other random weights, saved at ``dst``."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=gen) * 0.2 if v.is_floating_point() else v
             for k, v in state.items()}
    torch.save(state, dst)
    return dst


@pytest.fixture(scope="module")
def sam2_ckpt(tmp_path_factory) -> Path:
    return save_sam2_checkpoint(tmp_path_factory.mktemp("sam2") / "sam2_tiny.pt")


# ------------------------------------------------------- 1: what a rerun skips


def _sidecar(out: Path) -> dict:
    return json.loads(out.with_name(out.name + ".json").read_text())


def test_rerun_after_the_checkpoint_file_was_replaced_recomputes(tmp_path, tiny_model, capsys):
    """Other weights saved at the same checkpoint path: the rerun recomputes (it said
    "skipped" and kept the labels of the old weights); it then equals a fresh run. An
    unchanged file is still skipped."""
    model = tmp_path / "my.pt"
    shutil.copy(tiny_model, model)
    shutil.copy(tiny_model.with_name("tiny.pt.json"), tmp_path / "my.pt.json")
    _stack(tmp_path / "data" / "stack.tif")
    (tmp_path / "p.csv").write_text("id,slice,row,col\n1,1,20,20\n")
    args = ["segment", tmp_path / "data", "-p", tmp_path / "p.csv", "--model", model,
            "--device", "cpu", "--iou-threshold", "0", "--min-area", "0"]
    out = tmp_path / "o" / "stack_labels.tif"
    assert cli([*args, "-o", tmp_path / "o"], capsys)[0] == 0
    first_id = _sidecar(out)["model"]["id"]
    rc, _, err = cli([*args, "-o", tmp_path / "o"], capsys)
    assert rc == 0 and "skipped  stack.tif" in err  # same file: skipped
    _other_weights(tiny_model, model, seed=5)
    rc, _, err = cli([*args, "-o", tmp_path / "o"], capsys)
    assert rc == 0 and "done     stack.tif" in err and "skipped" not in err, err
    assert _sidecar(out)["model"]["id"] != first_id
    assert cli([*args, "-o", tmp_path / "fresh"], capsys)[0] == 0
    np.testing.assert_array_equal(tifffile.imread(out),
                                  tifffile.imread(tmp_path / "fresh" / "stack_labels.tif"))


def test_sam2_rerun_after_the_checkpoint_file_was_replaced_recomputes(tmp_path, sam2_ckpt,
                                                                      capsys):
    """The same with a SAM 2.1 checkpoint (r13): other weights at the same path are not
    taken for the ones that made the output."""
    model = tmp_path / "my_sam2.pt"
    shutil.copy(sam2_ckpt, model)
    shutil.copy(sam2_ckpt.with_name(sam2_ckpt.name + ".json"), tmp_path / "my_sam2.pt.json")
    _stack(tmp_path / "data" / "stack.tif", shape=(3, 40, 48))
    (tmp_path / "p.csv").write_text("id,slice,row,col\n1,1,20,20\n")
    args = ["segment", tmp_path / "data", "-p", tmp_path / "p.csv", "--model", model,
            "-o", tmp_path / "o", "--device", "cpu"]
    assert cli(args, capsys)[0] == 0
    save_sam2_checkpoint(model, "absent", seed=3)
    rc, _, err = cli(args, capsys)
    assert rc == 0 and "done     stack.tif" in err and "skipped" not in err, err


def test_output_written_before_the_model_check_is_still_skipped(tmp_path, tiny_model):
    """A complete output whose sidecar records the model id of the unchanged checkpoint (as
    every earlier version wrote it) stays complete: no recompute for nothing; with another
    recorded id it is "changed"."""
    from napari_sam import batch
    from napari_sam import io as nio

    inp = _stack(tmp_path / "stack.tif")
    out = tmp_path / "o" / "stack_labels.tif"
    out.parent.mkdir()
    tifffile.imwrite(out, np.zeros((4, 40, 48), np.uint16),
                     photometric="minisblack")
    ctx = batch.Context(command="auto", model=str(tiny_model), out_dir=tmp_path / "o")
    model, _ = batch.get_model(str(tiny_model), "cpu")

    def write(model_id):
        nio.write_output_metadata(out, model={"name": str(tiny_model), "id": model_id},
                                  version="0", parameters=ctx.signature(), objects=[],
                                  input_path=inp)

    write(model.model_id)
    assert batch.output_state(out, inp, ctx.signature()) == "complete"
    write("file:0123456789ab")
    assert batch.output_state(out, inp, ctx.signature()) == "changed"


def _two_inputs_csv(path: Path, a_objects=(1, 2)) -> Path:
    rows = ["file,id,slice,row,col"]
    rows += [f"a.tif,{i},1,{12 + 8 * i},20" for i in a_objects]
    rows += [f"b.tif,{i},1,{12 + 8 * i},20" for i in (1, 2)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_the_signature_of_a_segment_job_holds_its_own_prompts(tmp_path, tiny_model):
    """Editing a.tif's rows of the prompts file changes a.tif's signature only (the other
    file's output is not recomputed); an output recorded with a.tif's old prompts is
    "changed", with its current prompts "complete"."""
    from napari_sam import batch
    from napari_sam import io as nio

    a, b = _stack(tmp_path / "d" / "a.tif"), _stack(tmp_path / "d" / "b.tif", seed=1)
    ctx = batch.Context(command="segment", model=str(tiny_model), out_dir=tmp_path / "o")
    old = batch.make_jobs([a, b], ctx, batch.load_prompts(_two_inputs_csv(tmp_path / "p.csv")))
    new = batch.make_jobs([a, b], ctx,
                          batch.load_prompts(_two_inputs_csv(tmp_path / "q.csv", (1,))))
    sigs_old = [ctx.for_job(j).signature() for j in old]
    sigs_new = [ctx.for_job(j).signature() for j in new]
    assert sigs_old[0]["prompts"] != sigs_new[0]["prompts"]
    assert sigs_old[1] == sigs_new[1]
    model, _ = batch.get_model(str(tiny_model), "cpu")
    job = old[0]
    job.output.parent.mkdir(parents=True)
    tifffile.imwrite(job.output, np.zeros((4, 40, 48), np.uint16),
                     photometric="minisblack")
    nio.write_output_metadata(job.output, model={"name": ctx.model, "id": model.model_id},
                              version="0", parameters=sigs_old[0], objects=[], input_path=a)
    assert batch.output_state(job.output, a, sigs_old[0]) == "complete"
    assert batch.output_state(job.output, a, sigs_new[0]) == "changed"
    from napari_sam.batch.jobs import mark_partial

    mark_partial(new[0], ctx)  # the partial record names the job's own prompts
    assert _sidecar(job.output)["parameters"]["prompts"] == sigs_new[0]["prompts"]


def test_rerun_after_one_files_prompts_were_edited_recomputes_that_file_only(
        tmp_path, tiny_model, capsys):
    """r01: objects 1 and 2 on a.tif and b.tif, then a prompts file with only object 1 on
    a.tif: the rerun recomputes a.tif (object 2 gone from its labels) and skips b.tif."""
    a = _stack(tmp_path / "d" / "a.tif")
    _stack(tmp_path / "d" / "b.tif", seed=1)
    args = ["segment", a.parent, "-o", tmp_path / "o", "--model", tiny_model, "--device", "cpu",
            "--iou-threshold", "0", "--min-area", "0"]
    assert cli([*args, "-p", _two_inputs_csv(tmp_path / "p.csv")], capsys)[0] == 0
    out_a = tmp_path / "o" / "a_labels.tif"
    assert 2 in np.unique(tifffile.imread(out_a))
    rc, _, err = cli([*args, "-p", _two_inputs_csv(tmp_path / "q.csv", (1,))], capsys)
    assert rc == 0, err
    assert "done     a.tif" in err and "skipped  b.tif" in err, err
    assert 2 not in np.unique(tifffile.imread(out_a))


# ------------------------------------------- 2-4: SAM 1 options, device line, no --model


def _sam2_case(tmp_path, sam2_ckpt) -> list:
    _stack(tmp_path / "data" / "stack.tif", shape=(3, 40, 48))
    (tmp_path / "p.csv").write_text("id,slice,row,col\n1,1,20,20\n")
    return ["segment", tmp_path / "data", "-p", tmp_path / "p.csv", "--model", sam2_ckpt,
            "-o", tmp_path / "o", "--device", "cpu"]


def test_sam1_options_given_to_a_sam2_run_are_each_named_as_ignored(tmp_path, sam2_ckpt,
                                                                    capsys):
    """r02/r10: --mode, the stop rules, --axis-kind, --embeddings, --tiling and --batch-size
    with a SAM 2.1 model: one note per flag saying it is ignored (they were accepted in
    silence); the labels are those of a run without them. The device line says float32 and
    that --precision is not used (it said bf16)."""
    (tmp_path / "emb").mkdir()
    extra = ["--mode", "box", "--iou-threshold", "0.9", "--min-area", "500", "--fade-fraction",
             "0.3", "--rebound-fraction", "0.3", "--claimed-fraction", "0.2", "--axis-kind", "t",
             "--embeddings", tmp_path / "emb", "--tiling", "off", "--batch-size", "2",
             "--precision", "bf16"]
    rc, _, err = cli([*_sam2_case(tmp_path, sam2_ckpt), *extra], capsys)
    assert rc == 0, err
    for flag in ("--mode", "--iou-threshold", "--min-area", "--fade-fraction",
                 "--rebound-fraction", "--claimed-fraction", "--axis-kind"):
        assert (f"napari-sam: {flag} applies to SAM 1 propagation (--method sam1) only; "
                "ignored: SAM 2.1 propagation does not read it") in err, (flag, err)
    for flag in ("--embeddings", "--tiling", "--batch-size"):
        assert f"napari-sam: {flag} is ignored: SAM 2.1 propagation" in err, (flag, err)
    assert ("napari-sam: device cpu, float32 (SAM 2.1 propagation runs in float32; "
            "--precision is not used)") in err, err
    assert "bf16" not in err
    plain = tmp_path / "plain"
    args = _sam2_case(tmp_path, sam2_ckpt)
    assert cli([*args[:-3], plain, "--device", "cpu", "-q"], capsys)[0] == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o" / "stack_labels.tif"),
                                  tifffile.imread(plain / "stack_labels.tif"))


def test_max_slices_with_a_sam2_model_is_refused_before_any_work(tmp_path, sam2_ckpt, capsys):
    """--max-slices would be ignored by SAM 2.1 (it propagated through the whole stack):
    refused with exit 2, naming the alternatives; no -o folder is left behind."""
    rc, out, err = cli([*_sam2_case(tmp_path, sam2_ckpt), "--max-slices", "1"], capsys)
    assert rc == 2
    line = error_line(err)
    assert "--max-slices 1 limits SAM 1 propagation (--method sam1) only" in line
    assert "--stop-after-absent" in line
    assert not (tmp_path / "o").exists()


def test_method_sam2_without_model_names_the_sam2_models(tmp_path, capsys):
    """r06: --method sam2 without --model said "--model demo is a SAM 1 model" after a note
    recommending vit_b_lm; now one error naming sam2.1_hiera_tiny, exit 2, no demo-model note
    and no empty -o folder."""
    _stack(tmp_path / "data" / "stack.tif", shape=(3, 40, 48))
    (tmp_path / "p.csv").write_text("id,slice,row,col\n1,1,20,20\n")
    rc, out, err = cli(["segment", tmp_path / "data", "-p", tmp_path / "p.csv", "--method",
                        "sam2", "-o", tmp_path / "new" / "o"], capsys)
    assert rc == 2
    line = error_line(err)
    assert "--method sam2 needs a SAM 2.1 model" in line
    assert "give --model sam2.1_hiera_tiny" in line and "demo is a SAM 1" not in line
    assert "vit_b_lm" not in err
    assert not (tmp_path / "new").exists()


def test_a_sam2_session_is_refused_before_any_work(tmp_path, capsys,
                                                                        monkeypatch):
    """r23: replaying a session with SAM 2 operations failed the file (exit 1) and left an
    empty -o folder; now exit 2 before any work (check_session), naming the session."""
    from napari_sam.cli import batch_command
    from napari_sam.session import SessionError

    class FakeSession:
        path = tmp_path / "s.json"

    class FakePrompts(dict):
        session = FakeSession()

    def refuse(session):
        raise SessionError("operation 1 of this session propagated with SAM 2 memory")

    monkeypatch.setattr("napari_sam.session.check_replayable", refuse)
    with pytest.raises(batch_command.CLIError) as exc:
        batch_command.check_session(FakePrompts())
    assert exc.value.args[0].startswith("--prompts s.json: operation 1 of this session")
    assert exc.value.code == 2  # what docs/gui.md says
    assert batch_command.check_session({}) is None


def test_an_error_after_the_output_folder_was_made_leaves_no_empty_folder(tmp_path, tiny_model,
                                                                          capsys):
    """An error found once -o was created (here --tiling against the model's input) exits 2
    and removes the folders the run created (they were left empty); an existing -o stays."""
    _stack(tmp_path / "d" / "stack.tif")
    args = ["auto", tmp_path / "d", "--model", tiny_model, "--device", "cpu", "--tiling", "200"]
    rc, _, err = cli([*args, "-o", tmp_path / "a" / "o"], capsys)
    assert rc == 2 and "--tiling 200" in error_line(err)
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    assert cli([*args, "-o", tmp_path / "kept"], capsys)[0] == 2
    assert (tmp_path / "kept").is_dir()


# --------------------------------------------------------------------- 5: report, traces


def test_report_of_a_zarr_output_named_directly_reads_its_sidecar(tmp_path, tiny_model,
                                                                 capsys):
    """r10: `napari-sam report out/stack_labels.zarr` said "no propagation traces found" (it
    looked for sidecars inside the zarr folder); now it writes the trace PNG beside it."""
    _stack(tmp_path / "data" / "stack.tif")
    (tmp_path / "p.csv").write_text("id,slice,row,col\n1,1,20,20\n")
    rc, _, err = cli(["segment", tmp_path / "data", "-p", tmp_path / "p.csv", "--model",
                      tiny_model, "-o", tmp_path / "o", "--device", "cpu", "--format", "zarr",
                      "--iou-threshold", "0", "--min-area", "0", "-q"], capsys)
    assert rc == 0, err
    zarr_out = tmp_path / "o" / "stack_labels.zarr"
    assert zarr_out.is_dir()
    rc, out, err = cli(["report", zarr_out, "-q"], capsys)
    assert rc == 0, err
    png = tmp_path / "o" / "stack_labels.zarr.trace.png"
    assert out.splitlines() == [str(png)] and png.is_file()


def test_an_area_jump_below_the_prompted_slice_is_flagged_where_propagation_went():
    """A SAM 2 trace flagged the prompted slice 2 with "area 542 -> 9216 pixels from slice
    1", backwards: propagation went from slice 2 (prompted, 9216 px) down to slice 1 (542
    px). The flag now sits on slice 1 and reads "area 9216 -> 542 pixels from slice 2";
    above the prompt the order is unchanged."""
    from napari_sam.trace import propagation_trace

    labels = np.zeros((5, 100, 100), np.uint16)
    labels[1, :20, :27] = 1    # 540 px
    labels[2, :96, :96] = 1    # 9216 px, the prompted slice
    labels[3, :96, :96] = 1
    labels[4, :20, :27] = 1
    trace = propagation_trace(labels, None, {1: {}}, {1: {"up": "edge", "down": "absent"}},
                              annotated={1: [2]})
    flags = [(f["slice"], f["text"]) for f in trace["objects"][0]["flags"]]
    assert flags == [(1, "area 9216 -> 540 pixels from slice 2"),
                     (4, "area 9216 -> 540 pixels from slice 3")]


# ------------------------------------------------------------------ 1, 7: docs/cli.md


def test_cli_doc_says_what_a_rerun_compares_and_that_sam2_files_restart():
    """docs/cli.md said partial work resumes, but an interrupted SAM 2 file is run again
    from the start (and leaves its "partial" sidecar); and what a rerun compares now
    includes the input's prompts and the checkpoint file's content."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    flat = " ".join(doc.split())
    assert "`segment --method sam2` keeps no partial work" in flat
    assert "a rerun runs it again from the start" in flat
    assert "editing one file's rows of the prompts file" in flat
    assert "other weights saved at the same path recompute every output" in flat
