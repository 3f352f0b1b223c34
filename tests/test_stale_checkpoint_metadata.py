"""A checkpoint downloaded or copied over a training run's ``FILE.pt`` (a SAM checkpoint saved
under the name of an older training output) loaded with the settings of the ``FILE.json``
the training wrote beside it: thresholds, input smoothing, mask boundary and config chosen
for another model, silently. ``FILE.json`` records the sha256 of its checkpoint; loading now
uses it only with that checkpoint and otherwise says it is ignored and what to do."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from cli_runner import cli
from tiny_configs import SMALLEST_VIT, TINY_CNN, TRAINED, download_over, trained_pair

SAM_THRESHOLDS = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}


def stale_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is not used" in r.getMessage()]


def test_a_checkpoint_replaced_after_training_runs_with_its_own_settings(
        tmp_path, caplog, monkeypatch):
    from napari_sam import Predictor, load_model
    from napari_sam.models import download
    from napari_sam.models.download import file_model_id

    path = trained_pair(tmp_path / "m.pt")
    with caplog.at_level(logging.WARNING):
        ours = load_model(path)
    assert ours.automatic_defaults == TRAINED["automatic"]
    assert ours.input_smoothing == 0.7 and ours.mask_boundary == "edge"
    assert ours.model_id == f"{file_model_id(path)}+smooth0.7" and ours.load_notes == ()
    assert not stale_warnings(caplog)

    other = trained_pair(tmp_path / "other" / "m.pt", seed=1)  # another run's, copied over
    assert other.stat().st_size == path.stat().st_size  # told apart by its sha256 only
    shutil.copyfile(other, path)
    hashed = []
    real = download._hasher
    monkeypatch.setattr(download, "_hasher", lambda alg: hashed.append(alg) or real(alg))
    with caplog.at_level(logging.WARNING):
        model = load_model(path)
    assert hashed == ["sha256"]  # once: for the model id and for the metadata file
    note = (f"{tmp_path / 'm.json'} is not used: it describes another checkpoint than {path} "
            "(its sha256 differs: a checkpoint downloaded or copied over a training run's "
            "file?); m.pt runs with its own settings, not with that file's thresholds, input "
            "smoothing and mask boundary. Move m.json away (keep it with the checkpoint it was "
            "written for).")
    assert stale_warnings(caplog) == [note] and model.load_notes == (note,)
    assert model.automatic_defaults == {} and model.input_smoothing == 0
    assert model.mask_boundary == "threshold" and model.model_id == file_model_id(path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(model=path, device="cpu")
    assert predictor.model.automatic_defaults == {} and predictor.model.input_smoothing == 0
    assert stale_warnings(caplog) == [note]


def test_metadata_without_a_sha256_or_of_an_interrupted_save_is_still_used(tmp_path, caplog):
    """A FILE.json written by hand records no sha256: it cannot tell and is used
    as before; a save stopped between its two renames leaves the new FILE.json beside the
    checkpoint it replaces (``replaces_sha256``): the same run's settings, used."""
    from napari_sam import load_model
    from napari_sam.models.download import file_digest

    path = trained_pair(tmp_path / "m.pt")
    download_over(path)
    meta_file = tmp_path / "m.json"
    meta = json.loads(meta_file.read_text())
    old = {k: v for k, v in meta.items() if k not in ("sha256", "size", "replaces_sha256")}
    meta_file.write_text(json.dumps(old))
    with caplog.at_level(logging.WARNING):
        assert load_model(path).automatic_defaults == TRAINED["automatic"]
    meta_file.write_text(json.dumps({**meta, "replaces_sha256": file_digest(path)}))
    with caplog.at_level(logging.WARNING):
        assert load_model(path).input_smoothing == 0.7
    assert not stale_warnings(caplog)


def test_a_demo_architecture_checkpoint_replaced_takes_the_demo_settings(tmp_path, caplog):
    """A CNN checkpoint (the demo model's architecture) whose FILE.json is of another
    checkpoint takes the demo model's settings, as one without any FILE.json: one note."""
    from napari_sam import load_model
    from napari_sam.models.registry import DEMO_NAME, where

    if not where(DEMO_NAME).is_file():
        pytest.skip("the bundled demo model is not installed")
    demo = load_model(DEMO_NAME)
    path = trained_pair(tmp_path / "cnn.pt", TINY_CNN)
    download_over(path, TINY_CNN)
    with caplog.at_level(logging.WARNING):
        model = load_model(path)
    assert model.automatic_defaults == demo.automatic_defaults != TRAINED["automatic"]
    assert (model.input_smoothing, model.mask_boundary) == (demo.input_smoothing, "edge")
    said = stale_warnings(caplog)
    assert len(said) == 1 and model.load_notes == tuple(said)
    assert said[0].startswith(f"{tmp_path / 'cnn.json'} is not used: it describes another "
                              f"checkpoint than {path}")
    assert ("cnn.pt takes its settings (segment everything thresholds, input smoothing, mask "
            "boundary) from the bundled demo model, whose architecture it has. Move cnn.json "
            "away") in said[0]


def test_before_loading_the_dock_and_batch_resume_ignore_metadata_of_another_checkpoint(
        tmp_path):
    """The dock's thresholds before a picked checkpoint loads (no hashing there: a size that
    differs from the one FILE.json records) and the input smoothing batch jobs put in their
    resume signature (without loading the model)."""
    from napari_sam.annotate.model_choice import ModelChoice, recommended_thresholds
    from napari_sam.models.registry import declared_input_smoothing

    path = trained_pair(tmp_path / "m.pt")
    choice = ModelChoice(str(path), "file: m.pt", is_file=True)
    assert recommended_thresholds(choice)["pred_iou_thresh"] == 0.5
    assert declared_input_smoothing(str(path)) == 0.7
    download_over(path, SMALLEST_VIT)
    thresholds = recommended_thresholds(choice)
    assert {k: thresholds[k] for k in SAM_THRESHOLDS} == SAM_THRESHOLDS
    assert declared_input_smoothing(str(path)) == 0.0


def test_the_cli_runs_a_replaced_checkpoint_with_its_own_settings_and_says_so(
        tmp_path, capsys, offline_cli):
    import tifffile

    from napari_sam import io as nio
    from stacks import blob_stack

    inp = tmp_path / "data" / "blobs.tif"
    inp.parent.mkdir()
    tifffile.imwrite(inp, blob_stack()[:2])
    path = trained_pair(tmp_path / "m.pt")

    def auto(out):
        rc, _, err = cli(["auto", inp, "-o", tmp_path / out, "--model", path, "-q",
                          "--points-per-side", "4"], capsys)
        assert rc == 0, err
        return err, json.loads(nio.output_metadata_path(tmp_path / out / "blobs_labels.tif")
                               .read_text())["parameters_in_effect"]

    err, used = auto("ours")
    assert used["pred_iou_thresh"] == 0.5 and "is not used" not in err
    download_over(path)
    err, used = auto("downloaded")
    assert {k: used[k] for k in SAM_THRESHOLDS} == SAM_THRESHOLDS
    assert err.count(f"napari-sam: {tmp_path / 'm.json'} is not used: it describes another "
                     f"checkpoint than {path}") == 1, err
    assert "Move m.json away" in err


def test_training_from_a_replaced_checkpoint_says_so_and_does_not_carry_its_json(
        tmp_path, capsys, offline_cli):
    """``train --model m.pt`` from such a checkpoint: the note is printed (the library's log
    line did not reach the terminal) and the new model's FILE.json records the base model's
    own settings, not those of the stale m.json."""
    from cli_runner import tiny_train_argv
    from napari_sam.models.registry import DEMO_NAME, demo_settings, where

    if not where(DEMO_NAME).is_file():
        pytest.skip("the bundled demo model is not installed")
    base = trained_pair(tmp_path / "m.pt", TINY_CNN)
    download_over(base, TINY_CNN)
    data = tmp_path / "data"
    assert cli(["sample", "nuclei-2d", "-o", data, "-n", "2", "--shape", "64,64", "-q"],
               capsys)[0] == 0
    out = tmp_path / "new.pt"
    rc, _, err = cli(tiny_train_argv(data, data / "ground_truth", out, base), capsys)
    assert rc == 0, err
    assert err.count(f"napari-sam: note: {tmp_path / 'm.json'} is not used: it describes "
                     f"another checkpoint than {base}") == 1, err
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["automatic"] == demo_settings()["automatic"] != TRAINED["automatic"]


def test_the_cli_says_the_unused_metadata_file_once_outside_pytest(tmp_path):
    """Run as users run it (a process of its own, no log handler of pytest's): the note was
    printed twice, once with the 'napari-sam:' prefix and once raw from Python's last-resort
    log handler (reviewer, session 40)."""
    import os
    import subprocess
    import sys

    import tifffile

    from stacks import blob_stack

    inp = tmp_path / "blobs.tif"
    tifffile.imwrite(inp, blob_stack()[:1])
    path = trained_pair(tmp_path / "m.pt")
    download_over(path)
    env = dict(os.environ, NAPARI_SAM_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               NAPARI_SAM_PRECISION="fp32")
    out = subprocess.run([sys.executable, "-m", "napari_sam.cli", "auto", str(inp), "-o",
                          str(tmp_path / "out"), "--model", str(path), "-q",
                          "--points-per-side", "4"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    said = "m.json is not used: it describes another checkpoint"
    assert out.stderr.count(said) == 1, out.stderr


def test_a_cnn_checkpoint_without_its_metadata_records_the_smoothing_it_runs_with(
        tmp_path, capsys, offline_cli):
    """A CNN checkpoint copied without its FILE.json runs with the demo model's settings
    (input smoothing 0.7), but the batch's resume signature read the smoothing from the
    metadata file alone: its outputs' sidecars recorded none (0), so putting the FILE.json
    back (no smoothing) skipped outputs made with another preprocessing (session 41)."""
    import tifffile

    from napari_sam import io as nio
    from napari_sam.models import SamConfig
    from napari_sam.models.registry import DEMO_NAME, demo_settings, where
    from stacks import blob_stack
    from tiny_configs import save_tiny_cnn

    if not where(DEMO_NAME).is_file():
        pytest.skip("the bundled demo model is not installed")
    sigma = demo_settings()["input_smoothing"]["sigma"]
    inp = tmp_path / "blobs.tif"
    tifffile.imwrite(inp, blob_stack(z=2), photometric="minisblack")
    path = save_tiny_cnn(tmp_path)
    path.with_name("tiny.pt.json").unlink()  # copied without it
    argv = ["embed", inp, "-o", tmp_path / "out", "--model", path]
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    out = tmp_path / "out" / "blobs.zarr"
    meta = json.loads(nio.output_metadata_path(out).read_text())
    assert meta["parameters"]["input_smoothing"] == sigma > 0
    assert meta["model"]["id"].endswith(f"+smooth{sigma:g}")
    assert "skipped  blobs.tif" in cli(argv, capsys)[2]  # unchanged: skipped
    path.with_name("tiny.pt.json").write_text(json.dumps({"config": SamConfig(**TINY_CNN)
                                                          .to_dict()}))  # put back
    rc, _, err = cli(argv, capsys)
    assert rc == 0 and (f"recomputed: parameters changed: input_smoothing {sigma:g} -> 0.0"
                        in err), err
    assert "input_smoothing" not in json.loads(nio.output_metadata_path(out).read_text())[
        "parameters"]


def test_outputs_of_a_checkpoint_without_its_json_made_before_its_smoothing_was_recorded_stay(
        tmp_path, capsys, offline_cli):
    """A CNN checkpoint without its FILE.json (the demo's copied as mine.pt) runs smoothed
    (0.7); the resume signature records that since, and every output made before (its
    sidecar lacks ``input_smoothing``; its model id says ``+smooth0.7``) was recomputed with
    "parameters changed: input_smoothing 0.0 -> 0.7". It is complete now; one whose model
    id says no smoothing is still recomputed."""
    import tifffile

    from napari_sam import io as nio
    from napari_sam.models.registry import DEMO_NAME, where
    from stacks import blob_stack

    if not where(DEMO_NAME).is_file():
        pytest.skip("the bundled demo model is not installed")
    inp = tmp_path / "blobs.tif"
    tifffile.imwrite(inp, blob_stack()[:2])
    mine = tmp_path / "mine.pt"
    shutil.copy(where(DEMO_NAME), mine)
    out = tmp_path / "out"
    argv = ["auto", inp, "-o", out, "--model", mine, "--points-per-side", "4"]
    assert cli(argv, capsys)[0] == 0
    sidecar = nio.output_metadata_path(out / "blobs_labels.tif")
    record = json.loads(sidecar.read_text())
    assert record["parameters"].pop("input_smoothing") == 0.7  # as written before
    assert record["model"]["id"].endswith("+smooth0.7")
    sidecar.write_text(json.dumps(record))
    rc, said, err = cli(argv, capsys)
    assert rc == 0 and "0 done, 1 skipped" in said + err, said + err
    record["model"]["id"] = record["model"]["id"].split("+")[0]  # made unsmoothed
    sidecar.write_text(json.dumps(record))
    rc, said, err = cli(argv, capsys)
    assert rc == 0 and "parameters changed: input_smoothing" in said + err, said + err
