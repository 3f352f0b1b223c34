"""The data engine from the shell (helper walk-through, session 30): segment, correct the
outputs by hand, rerun or retrain; what the user corrected is never replaced unasked."""

from __future__ import annotations

import os

import pytest
import tifffile

from cli_runner import cli
from napari_sam import io as nio

pytestmark = pytest.mark.usefixtures("offline_cli")


def _blobs(path, seed=0):
    from stacks import blob_stack

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, blob_stack(z=3, seed=seed), photometric="minisblack")
    return path


@pytest.fixture
def done(tmp_path, tiny_model, capsys):
    """``auto`` over one stack: (argv, input, output)."""
    inp = _blobs(tmp_path / "data" / "blobs.tif")
    argv = ["auto", inp, "-o", tmp_path / "out", "--model", tiny_model, "--points-per-side",
            "4", "-q"]
    rc, _, err = cli(argv, capsys)
    out = tmp_path / "out" / "blobs_labels.tif"
    assert rc == 0 and out.is_file(), err
    return argv, inp, out


def test_a_rerun_keeps_labels_corrected_by_hand(done, capsys):
    """The docs' loop: correct auto's labels by hand, rerun the same command (to resume, or
    with the retrained model). The rerun replaced the corrections without a word (the
    output's size had changed, so it counted as "changed"). Now it is kept, the summary
    says why, and --overwrite replaces it."""
    argv, inp, out = done
    labels = tifffile.imread(out)
    labels[0, :10, :10] = 999  # the correction, saved as napari or tifffile would
    tifffile.imwrite(out, labels, photometric="minisblack")
    assert nio.output_edited(out)
    rc, stdout, _ = cli([a for a in argv if a != "-q"], capsys)
    assert rc == 0
    assert (tifffile.imread(out) == 999).sum() == 100
    assert "1 skipped (1 changed since written: kept)" in stdout, stdout
    assert "changed since napari-sam wrote it (labels corrected by hand?): kept as it is; pass " \
           "--overwrite to replace it" in stdout
    # the input changed too (a new acquisition under the same name): still kept
    _blobs(inp, seed=1)
    assert cli(argv, capsys)[0] == 0 and (tifffile.imread(out) == 999).sum() == 100
    rc, _, _ = cli([*argv, "--overwrite"], capsys)
    assert rc == 0 and not (tifffile.imread(out) == 999).any()
    assert not nio.output_edited(out)


def test_an_edit_that_keeps_the_size_is_seen_and_a_copy_is_not_an_edit(done, capsys):
    argv, _, out = done
    before = out.read_bytes()
    meta = nio.read_output_metadata(out)
    assert meta["output"]["sha256"] and meta["output"]["mtime_ns"] == out.stat().st_mtime_ns
    # a copy that kept the content (cp without -p: another mtime) is not an edit: skipped
    os.utime(out, ns=(out.stat().st_atime_ns, out.stat().st_mtime_ns + 10**9))
    assert not nio.output_edited(out)
    assert cli(argv, capsys)[0] == 0 and out.read_bytes() == before
    # the same size, other bytes
    data = bytearray(before)
    data[-1] ^= 0xFF
    out.write_bytes(bytes(data))
    assert nio.output_edited(out)
    assert cli(argv, capsys)[0] == 0 and out.read_bytes() == bytes(data)


def test_a_segment_output_corrected_by_hand_is_kept(tmp_path, tiny_model, capsys):
    inp = _blobs(tmp_path / "blobs.tif")
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,slice,row,col\n1,1,20,20\n")
    argv = ["segment", inp, "-o", tmp_path / "out", "-p", prompts, "--model", tiny_model, "-q"]
    assert cli(argv, capsys)[0] == 0
    out = tmp_path / "out" / "blobs_labels.tif"
    labels = tifffile.imread(out)
    labels[2, :5, :5] = 7
    tifffile.imwrite(out, labels, photometric="minisblack")
    prompts.write_text("id,slice,row,col\n1,1,20,20\n2,1,40,40\n")  # another object added
    rc, stdout, _ = cli([a for a in argv if a != "-q"], capsys)
    assert rc == 0 and (tifffile.imread(out) == 7).sum() == 25
    assert "kept as it is" in stdout


def test_a_checkpoint_copied_without_its_json_is_said_by_the_cli(tmp_path, capsys):
    """Python and the dock said that a checkpoint found without its metadata file takes the
    demo model's settings; the CLI printed only its id. Now it says so, also with -q."""
    import shutil

    from napari_sam.models.registry import where

    if not where("demo").is_file():
        pytest.skip("the bundled demo model is not installed")
    alone = tmp_path / "round1.pt"
    shutil.copyfile(where("demo"), alone)
    inp = _blobs(tmp_path / "data" / "blobs.tif")
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "out", "--model", alone, "-q",
                      "--points-per-side", "4"], capsys)
    assert rc == 0, err
    assert (f"napari-sam: {alone} has no metadata file beside it (round1.json): its settings "
            "(segment everything thresholds, input smoothing, mask boundary) are taken from the "
            "bundled demo model") in err, err


def test_the_end_of_training_says_how_to_use_the_model_on_the_images_given(
        tmp_path, tiny_model, capsys):
    """The last line said ``use it: napari-sam auto "data/*.tif" ...`` whatever the images
    were; it now names the images trained on."""
    from cli_runner import tiny_train_argv
    from napari_sam.cli import main

    data = tmp_path / "my data"
    assert main(["sample", "nuclei-2d", "-o", str(data), "-n", "2", "--shape", "64,64",
                 "-q"]) == 0
    out = tmp_path / "m.pt"
    rc, stdout, err = cli(tiny_train_argv(data, data / "ground_truth", out, tiny_model), capsys)
    assert rc == 0, err
    last = stdout.strip().splitlines()[-1]
    assert last.endswith(f"napari-sam auto '{data}' -o out/ --model {out}"), stdout
    assert last.startswith(("use it: ", "or try it: ")), stdout


def test_images_and_labels_paired_in_sorted_order_are_named(tmp_path, tiny_model, capsys):
    """cellsA.tif was trained with mask_1.tif, which was cellsB's ground truth, without a
    word (helper walk-through, session 30): where no label file is named after an image the
    pairs come from sorted order, and the command now names them."""
    from cli_runner import tiny_train_argv
    from napari_sam.cli import main

    src = tmp_path / "src"
    assert main(["sample", "nuclei-2d", "-o", str(src), "-n", "2", "--shape", "64,64",
                 "-q"]) == 0
    img, lab = tmp_path / "img", tmp_path / "lab"
    img.mkdir()
    lab.mkdir()
    for k, path in enumerate(sorted(src.glob("*.tif"))):
        (img / f"cells{'AB'[k]}.tif").write_bytes(path.read_bytes())
        (lab / f"mask_{2 - k}.tif").write_bytes((src / "ground_truth" / path.name).read_bytes())
    rc, _, err = cli(tiny_train_argv(img, lab, tmp_path / "m.pt", tiny_model), capsys)
    assert rc == 0, err
    assert ("no label file is named after an image, so they are paired in sorted order: "
            "cellsA.tif + mask_1.tif, cellsB.tif + mask_2.tif; name each label file after its "
            "image") in err, err


def test_validation_on_slices_of_the_one_stack_trained_on_is_said(tmp_path, tiny_model,
                                                                  capsys):
    """Trained on one stack, validation held out 3 of its slices (the same 5 nuclei) and
    reported IoU 0.97 without a word, where one 2D image got a note (helper walk-through,
    session 30)."""
    from cli_runner import tiny_train_argv
    from napari_sam.cli import main

    data = tmp_path / "d"
    assert main(["sample", "nuclei-3d", "-o", str(data), "--shape", "8,64,64", "-q"]) == 0
    (stack,) = data.glob("*.tif")
    rc, _, err = cli(tiny_train_argv(stack, data / "ground_truth" / stack.name,
                                     tmp_path / "m.pt", tiny_model), capsys)
    assert rc == 0, err
    assert "validation holds out 2 slices of the one stack (" in err, err
    assert ("trained on: neighbouring slices show the same objects, so the validation IoU is "
            "close to the fit to the training data") in err, err


def test_train_d_d_takes_labels_saved_by_hand_beside_their_images(tmp_path, tiny_model,
                                                                    capsys):
    """``train d/ d/`` (the docs' recipe) with img.tif and img_labels.tif saved from napari
    (no napari-sam sidecar): the labels were counted as an image ("2 image files but 1
    label files"). A file named after an image with _labels is a label image."""
    from cli_runner import tiny_train_argv
    from napari_sam.cli import main

    d = tmp_path / "d"
    assert main(["sample", "nuclei-2d", "-o", str(d), "-n", "2", "--shape", "64,64",
                 "-q"]) == 0
    for img in d.glob("*.tif"):
        (d / f"{img.stem}_labels.tif").write_bytes((d / "ground_truth" / img.name).read_bytes())
    argv = [a for a in tiny_train_argv(d, d, tmp_path / "m.pt", tiny_model) if a != "-q"]
    rc, out, err = cli(argv, capsys)
    assert rc == 0, out + err
    assert "IMAGES: left out 2 files named after an image with _labels" in out + err, err


def test_a_replay_with_a_checkpoint_retrained_at_the_sessions_path_says_so(files, tiny_sam,
                                                                           tmp_path, capsys):
    """Retrained into the same path, the session's checkpoint holds other weights; the
    replay said "model ...: the session's" as if nothing had changed (helper walk-through,
    session 30)."""
    from napari_sam import session as S
    from napari_sam.batch.models import model_file_id
    from test_session import make_session

    sess = make_session(files, tiny_sam)
    sess.model = {**sess.model, "id": "file:0123456789ab"}  # made with other weights
    path = S.write_session(sess, tmp_path / "work.json")
    rc, _, err = cli(["segment", files["stack"], "--prompts", path, "-o", tmp_path / "out",
                      "--device", "cpu"], capsys)
    assert rc == 0, err
    now = model_file_id(str(files["model"]))
    assert (f"the session's path, but the file holds other weights now (id {now}; the session "
            "was made with file:0123456789ab): the prompts are rerun") in err, err


def test_a_resumed_piece_says_it_continues_the_saved_run(tmp_path, tiny_model, capsys):
    from cli_runner import tiny_train_argv
    from napari_sam.cli import main

    data = tmp_path / "d"
    assert main(["sample", "nuclei-2d", "-o", str(data), "-n", "2", "--shape", "64,64",
                 "-q"]) == 0
    out = tmp_path / "m.pt"
    argv = [a for a in tiny_train_argv(data, data / "ground_truth", out, tiny_model)
            if a != "-q"] + ["--resume", "--epochs", "2"]
    rc, _, err = cli([*argv, "--max-steps", "1"], capsys)
    assert rc == 0 and "continuing the run" not in err, err
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    assert f"continuing the run saved in {tmp_path / 'm.train-state.pt'}" in err, err
