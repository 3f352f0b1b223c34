"""The data-engine loop (annotate -> train -> use the finetuned model) after a review:

* ``-o FILE.pt`` never replaces a ``FILE.json`` that training did not write, and an
  unwritable ``-o`` is refused before any work;
* label images written by ``auto`` are training labels, and the label TIFFs the GUI saves
  beside an image (session autosave, Save session) are not taken as images;
* a checkpoint finetuned from a model with recommended segment-everything thresholds keeps
  them;
* binary masks given as instance labels are refused, naming the file and the fix;
* ``--precision`` reaches the trainer; a resume with another ``--model`` or ``--seed`` is
  refused naming it;
* a validation on the training data and images left out are said, and a piece of a resumable
  run that finished no epoch says that it wrote the training state.

The command-line cases run ``napari_sam.cli.main`` in-process on a tiny model and 64x64
sample images for one or two steps.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line
from cli_runner import tiny_train_argv as _train


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""




# ----------------------------------------------------------------------------- outputs


def test_an_existing_json_beside_the_output_is_not_replaced(tmp_path, samples, tiny_model,
                                                            capsys):
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}')
    out = tmp_path / "notes.pt"
    for extra in ((), ("--resume",), ("--overwrite",)):  # never replaced (s39)
        rc, _, err = cli(_train(samples, samples / "ground_truth", out, tiny_model, *extra),
                         capsys)
        assert rc == 2
        assert (f"{notes} exists and was not written by napari-sam train (notes.json is not "
                "the metadata of a training run): napari-sam never replaces it, not even with "
                "--overwrite") in error_line(err)
        assert "pass --overwrite" not in error_line(err)
        assert notes.read_text() == '{"my": "notes"}' and not out.exists()


def test_overwrite_never_replaces_a_checkpoint_no_training_run_wrote(tmp_path, samples,
                                                                     tiny_model, capsys):
    """``train -o sam_vit_b.pt --overwrite`` over a downloaded checkpoint (no training
    metadata beside it): refused before any work, the file unchanged (was: replaced); the
    API refuses it too. An earlier training run's checkpoint is replaced."""
    import napari_sam as ns

    out = tmp_path / "sam_vit_b.pt"
    out.write_bytes(b"downloaded weights")
    rc, _, err = cli(_train(samples, samples / "ground_truth", out, tiny_model, "--overwrite"),
                     capsys)
    assert rc == 2 and f"{out} exists and was not written by napari-sam train" in err
    assert out.read_bytes() == b"downloaded weights" and not (tmp_path / "sam_vit_b.json").exists()
    with pytest.raises(FileExistsError, match="not even with overwrite=True"):
        ns.train(str(samples / "*.tif"), str(samples / "ground_truth" / "*.tif"),
                 model=tiny_model, out=out, overwrite=True, epochs=1)
    assert out.read_bytes() == b"downloaded weights"
    ours = tmp_path / "m.pt"
    assert cli(_train(samples, samples / "ground_truth", ours, tiny_model), capsys)[0] == 0
    assert cli(_train(samples, samples / "ground_truth", ours, tiny_model, "--overwrite"),
               capsys)[0] == 0


def test_a_resumable_run_rewrites_its_own_json(tmp_path, samples, tiny_model, capsys):
    out = tmp_path / "m.pt"
    args = _train(samples, samples / "ground_truth", out, tiny_model, "--resume")
    args[args.index("--epochs") + 1] = "2"
    assert cli([*args, "--max-steps", "1"], capsys)[0] == 0
    assert (tmp_path / "m.json").is_file()  # epoch 1 is done: the checkpoint and its JSON
    rc, text, _ = cli(args, capsys)
    assert rc == 0 and f"wrote {out}" in text and "; 2 epochs, " in text


def test_an_output_under_a_file_is_refused_before_any_work(tmp_path, samples, tiny_model,
                                                           capsys):
    (tmp_path / "m1.pt").write_bytes(b"x")
    out = tmp_path / "m1.pt" / "x.pt"
    rc, _, err = cli(_train(samples, samples / "ground_truth", out, tiny_model), capsys)
    assert rc == 2
    assert error_line(err) == (f"napari-sam: error: -o {out}: {tmp_path / 'm1.pt'} is a file, "
                               "not a folder; choose another -o")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_an_unwritable_output_folder_is_refused_before_any_work(samples, tiny_model, capsys):
    rc, _, err = cli(_train(samples, samples / "ground_truth", "/proc/x.pt", tiny_model),
                     capsys)
    assert rc == 2
    line = error_line(err)
    assert line.startswith("napari-sam: error: -o /proc/x.pt: cannot write in /proc (")
    assert line.endswith("); choose another -o") and ".tmp-" not in line


# ----------------------------------------------------------------------------- inputs


def _as_our_output(labels_file: Path, dest: Path) -> Path:
    """A copy of ``labels_file`` at ``dest`` with a napari-sam output sidecar (as ``auto``
    writes them)."""
    from napari_sam import io as nio

    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(labels_file, dest)
    nio.output_metadata_path(dest).write_text(json.dumps(
        {"format": nio.OUTPUT_METADATA_FORMAT, "status": "complete"}))
    return dest


def test_labels_written_by_auto_are_training_labels(tmp_path, samples, tiny_model, capsys):
    from napari_sam import batch

    auto = tmp_path / "auto"
    for f in sorted((samples / "ground_truth").glob("*.tif")):
        _as_our_output(f, auto / f"{f.stem}_labels.tif")
    assert len(batch.collect_inputs([auto], labels=True)) == 3
    with pytest.raises(batch.BatchError, match="every match is an output of napari-sam"):
        batch.collect_inputs([auto])  # as images they are still left out
    rc, text, _ = cli(_train(samples, auto, tmp_path / "m.pt", tiny_model), capsys)
    assert rc == 0 and f"wrote {tmp_path / 'm.pt'}" in text
    first = sorted(samples.glob("*.tif"))[0]
    rc, _, _ = cli(_train(first, auto / f"{first.stem}_labels.tif", tmp_path / "one.pt",
                          tiny_model), capsys)
    assert rc == 0 and (tmp_path / "one.pt").is_file()


def test_labels_side_left_empty_speaks_of_labels(tmp_path, samples, tiny_model, capsys):
    from napari_sam import io as nio

    store = tmp_path / "emb" / "a.zarr"
    store.mkdir(parents=True)
    (store / ".zgroup").write_text('{"zarr_format": 2}')
    nio.output_metadata_path(store).write_text(json.dumps(
        {"format": nio.OUTPUT_METADATA_FORMAT}))
    first = sorted(samples.glob("*.tif"))[0]
    rc, _, err = cli(_train(first, store, tmp_path / "m.pt", tiny_model), capsys)
    assert rc == 2
    assert "no label images left (every match is an embedding written by napari-sam embed)" \
        in error_line(err)


def _annotated_folder(samples: Path, root: Path) -> tuple[Path, list[Path]]:
    """A folder with one image, its GUI autosave and a saved session (label TIFFs beside
    the session files, written by :func:`napari_sam.session.write_session`)."""
    from napari_sam.session import Session, session_file_for, write_session

    folder = root / "gui"
    folder.mkdir()
    image = folder / "img.tif"
    shutil.copy(sorted(samples.glob("*.tif"))[0], image)
    labels = tifffile.imread(sorted((samples / "ground_truth").glob("*.tif"))[0])[None]
    written = []
    for path in (session_file_for(image), folder / "manual.sam-session.json"):
        session = Session(image={"path": str(image), "shape": list(labels.shape)},
                          model={"name": "demo"}, labels=labels, base=labels * 0 + 1)
        write_session(session, path)
        written += sorted(p for p in folder.glob(path.name[:-len(".json")] + ".*.tif"))
    return folder, written


def test_session_label_tiffs_are_not_taken_as_images(tmp_path, samples, tiny_model, capsys):
    from napari_sam import batch

    folder, session_tiffs = _annotated_folder(samples, tmp_path)
    names = sorted(p.name for p in session_tiffs)
    assert len(names) == 4 and any(".sam-session.labels-" in n for n in names)
    assert batch.collect_inputs([folder]) == [folder / "img.tif"]
    assert batch.collect_inputs([str(folder / "*.tif")]) == [folder / "img.tif"]
    # named explicitly, or collected as labels, they are used
    assert batch.collect_inputs([session_tiffs[0]]) == [session_tiffs[0]]
    assert len(batch.collect_inputs([folder], labels=True)) == 5
    lab = tmp_path / "labels"
    lab.mkdir()
    shutil.copy(sorted((samples / "ground_truth").glob("*.tif"))[0], lab / "img.tif")
    rc, text, _ = cli(_train(folder, lab, tmp_path / "m.pt", tiny_model), capsys)
    assert rc == 0 and f"wrote {tmp_path / 'm.pt'}" in text
    # a TIFF named like a session's that no session file names is an image
    stray = folder / "other.sam-session.labels-0123456789ab.tif"
    shutil.copy(folder / "img.tif", stray)
    assert stray in batch.collect_inputs([folder])


# ----------------------------------------------------------------------------- the model


def test_a_model_finetuned_from_the_demo_keeps_its_automatic_thresholds(
        tmp_path, samples, capsys):
    from napari_sam.automatic.params import SAM_THRESHOLDS, recommended_thresholds
    from napari_sam.models.registry import load_model

    out = tmp_path / "ft.pt"
    rc, _, _ = cli(_train(samples, samples / "ground_truth", out, "demo",
                          "--freeze-encoder"), capsys)
    assert rc == 0
    base = recommended_thresholds(load_model("demo", device="cpu"))
    assert base != SAM_THRESHOLDS
    assert recommended_thresholds(load_model(out, device="cpu")) == base
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["automatic"] == base and "carried over" in meta["automatic_note"]


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("kind", ["bool", "binary255"])
def test_binary_masks_are_refused_as_instance_labels(tmp_path, samples, tiny_model, capsys,
                                                     kind):
    lab = tmp_path / "lab"
    lab.mkdir()
    for f in sorted((samples / "ground_truth").glob("*.tif")):
        mask = tifffile.imread(f) > 0
        tifffile.imwrite(lab / f.name, mask if kind == "bool"
                         else (mask * 255).astype(np.uint8))
    rc, _, err = cli(_train(samples, lab, tmp_path / "m.pt", tiny_model), capsys)
    line = error_line(err)
    assert rc == 2 and not (tmp_path / "m.pt").exists()
    first = sorted(lab.glob("*.tif"))[0]
    assert f"/ {first}: " in line
    assert ("a bool mask, not instance labels" if kind == "bool"
            else "the labels hold one id (255) made of ") in line
    assert "skimage.measure.label(mask)" in line


def test_instance_labels_with_one_id_in_parts_are_accepted_beside_other_ids():
    from napari_sam.training.data import load_pairs

    image = np.random.default_rng(0).random((32, 32), np.float32)
    lab = np.zeros((32, 32), np.uint16)
    lab[2:6, 2:6] = 1
    lab[20:24, 20:24] = 1  # one object cut in two (e.g. by a crop) ...
    lab[10:14, 2:6] = 2  # ... among others: instance labels
    assert len(load_pairs([image], [lab])) == 1
    single = (lab == 2).astype(np.uint8) * 255  # one object, one part: accepted
    assert len(load_pairs([image], [single])) == 1
    with pytest.raises(ValueError, match=r"one id \(1\) made of 3 separate parts"):
        load_pairs([image], [(lab > 0).astype(np.uint8)])


# ----------------------------------------------------------------------------- options


def test_precision_reaches_the_trainer(tmp_path, samples, tiny_model, capsys):
    out = tmp_path / "b.pt"
    rc, _, _ = cli(_train(samples, samples / "ground_truth", out, tiny_model, "--precision",
                          "bf16"), capsys)
    assert rc == 0
    assert json.loads(out.with_suffix(".json").read_text())["train_config"]["precision"] \
        == "bf16"


def test_a_resume_with_another_model_or_seed_is_refused_naming_it(tmp_path, samples,
                                                                  tiny_model, capsys):
    other = tmp_path / "other.pt"
    shutil.copy(tiny_model, other)
    shutil.copy(f"{tiny_model}.json", f"{other}.json")
    out = tmp_path / "r.pt"
    args = _train(samples, samples / "ground_truth", out, tiny_model, "--resume",
                  "--val-fraction", "0.34")
    args[args.index("--epochs") + 1] = "2"
    assert cli([*args, "--max-steps", "1"], capsys)[0] == 0
    args_other = list(args)
    args_other[args.index("--model") + 1] = other
    rc, _, err = cli(args_other, capsys)
    assert rc == 2
    assert (f"the run differs in model (saved {str(Path(tiny_model).resolve())!r}, given "
            f"{str(other.resolve())!r}); ") in error_line(err)
    rc, _, err = cli([*args, "--seed", "3"], capsys)
    assert rc == 2
    assert "the run differs in seed (saved 0, given 3); " in error_line(err)
    assert "images" not in error_line(err)


# ----------------------------------------------------------------------------- messages


def test_validation_on_the_training_data_is_said(tmp_path, samples, tiny_model, capsys):
    first = sorted(samples.glob("*.tif"))[0]
    lab = tmp_path / "lab.tif"
    gt = tifffile.imread(samples / "ground_truth" / first.name)
    tifffile.imwrite(lab, (gt == gt.max()).astype(np.uint16))
    rc, text, err = cli(_train(first, lab, tmp_path / "m.pt", tiny_model), capsys)
    assert rc == 0
    assert "validation runs on it too, so the validation IoU measures the fit to the " \
           "training data" in err
    assert "validation IoU on the training data " in text


def test_an_image_without_large_enough_objects_is_said_to_be_left_out(
        tmp_path, samples, tiny_model, capsys):
    img, lab = tmp_path / "img", tmp_path / "lab"
    img.mkdir()
    lab.mkdir()
    for f in sorted(samples.glob("*.tif"))[:2]:
        shutil.copy(f, img / f.name)
        shutil.copy(samples / "ground_truth" / f.name, lab / f.name)
    tiny = np.zeros((64, 64), np.uint16)
    tiny[10, 10] = 1
    first = sorted(lab.glob("*.tif"))[0]
    tifffile.imwrite(first, tiny)
    rc, _, err = cli(_train(img, lab, tmp_path / "m.pt", tiny_model), capsys)
    assert rc == 0
    assert (f"napari-sam: note: {sorted(img.glob('*.tif'))[0]} / {first}: left out of "
            "training: no object has at least 6 pixels at the model input (128 px)") in err


def test_a_piece_that_finished_no_epoch_says_it_wrote_the_state(tmp_path, samples,
                                                                tiny_model, capsys):
    out = tmp_path / "p.pt"
    state = tmp_path / "p.train-state.pt"
    args = _train(samples, samples / "ground_truth", out, tiny_model, "--resume",
                  "--max-steps", "1")
    args[args.index("--steps-per-epoch") + 1] = "2"
    args[args.index("--epochs") + 1] = "2"
    rc, text, _ = cli(args, capsys)
    assert rc == 0 and f"wrote the training state {state} to resume from" in text
    assert f"wrote {out}" not in text
    rc, text, _ = cli(args, capsys)  # the second step ends epoch 1
    assert rc == 0 and f"wrote {out}: the weights of epoch 1" in text
    rc, text, _ = cli(args, capsys)
    assert rc == 0 and f"wrote {out}" not in text
    assert ("this piece finished no epoch (1 of 2 done, " in text
            and f"wrote the training state {state} to resume from; {out} holds the weights "
                "written by an earlier piece" in text)


def test_a_model_file_that_is_no_checkpoint_is_refused_with_exit_code_2(tmp_path, samples,
                                                                         capsys):
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    rc, _, err = cli(_train(samples, samples / "ground_truth", tmp_path / "m.pt", bad), capsys)
    line = error_line(err)
    assert rc == 2 and not (tmp_path / "m.pt").exists()
    assert line.startswith(f"napari-sam: error: --model {bad}: cannot load it as a model to "
                           f"train from: {bad} is not a readable PyTorch checkpoint")
    assert ".;" not in line and line.endswith("or a name from `napari-sam models`")


def test_the_python_api_never_replaces_a_json_it_did_not_write(tmp_path, tiny_model,
                                                               offline_cli):
    """``ns.train(..., out="notes.pt")`` beside a user's ``notes.json``: FileExistsError before
    any work, the file unchanged; ``overwrite=True`` replaces it. A second run to the same
    ``out`` replaced the first model without asking (helper walk-through, session 30: the
    command refuses it); now FileExistsError too, and ``overwrite=True`` replaces both."""
    import napari_sam as ns

    rng = np.random.default_rng(0)
    image = (rng.random((64, 64)) * 100).astype(np.uint8)
    labels = np.zeros((64, 64), np.int32)
    labels[10:30, 10:30], labels[40:60, 35:55] = 1, 2
    image[labels > 0] += 120
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}')
    kw = dict(model=str(tiny_model), epochs=1, batch_size=1, objects_per_image=2,
              val_fraction=0.0, progress=False, device="cpu")
    for overwrite in (False, True):  # never replaced, not even with overwrite=True (s39)
        with pytest.raises(FileExistsError, match="notes.json exists and was not written by "
                           "napari-sam train"):
            ns.train([image], [labels], out=tmp_path / "notes.pt", overwrite=overwrite, **kw)
        assert notes.read_text() == '{"my": "notes"}' and not (tmp_path / "notes.pt").exists()
    notes.unlink()  # the user moves the notes away
    ns.train([image], [labels], out=tmp_path / "notes.pt", **kw)
    assert json.loads(notes.read_text())["trained_by"].startswith("napari_sam")
    before = (tmp_path / "notes.pt").read_bytes()
    with pytest.raises(FileExistsError, match=r"notes\.pt already exists \(an earlier model\?\) "
                       r"and there is no training state beside it \(notes\.train-state\.pt\) to "
                       "resume; pass overwrite=True to replace it or give another out") as exc:
        ns.train([image], [labels], out=tmp_path / "notes.pt", **kw)
    assert "resume=True" not in str(exc.value)  # it was suggested, then refused (no state)
    assert (tmp_path / "notes.pt").read_bytes() == before
    ns.train([image], [labels], out=tmp_path / "notes.pt", overwrite=True, seed=1, **kw)
    assert (tmp_path / "notes.pt").read_bytes() != before
