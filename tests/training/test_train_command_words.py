"""What ``napari-sam train`` says when LABELS are missing, given twice, or not where it looks
(helper walk-through of the data engine): each message names what is wrong and offers only
what the command has."""

from __future__ import annotations

import pytest
import tifffile

from cli_runner import cli, error_line

pytestmark = pytest.mark.usefixtures("offline_cli")


def _stack(path):
    from stacks import blob_stack

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, blob_stack(z=3), photometric="minisblack")
    return path


def test_missing_labels_say_they_are_missing_and_twice_says_twice(tmp_path, capsys):
    """Both said "give the label files once", which fits only LABELS given twice."""
    image = _stack(tmp_path / "d" / "top.tif")
    rc, _, err = cli(["train", image, "-o", tmp_path / "m.pt"], capsys)
    line = error_line(err)
    assert rc == 2 and "no LABELS given: name the label files after IMAGES" in line, line
    assert "once" not in line
    rc, _, err = cli(["train", image, tmp_path / "d", "--labels", tmp_path / "d", "-o",
                      tmp_path / "m.pt"], capsys)
    line = error_line(err)
    assert rc == 2 and f"LABELS given twice ({tmp_path / 'd'} and --labels" in line, line
    assert not (tmp_path / "m.pt").exists()


def test_labels_in_a_subfolder_name_the_folder_to_give_not_recursive(tmp_path, capsys):
    """`train top.tif nest/` with the labels in nest/sub/ said "directory 'nest/' holds no
    images ...; use --recursive to search subfolders": train has no --recursive, and they
    are label files."""
    image = _stack(tmp_path / "d" / "top.tif")
    _stack(tmp_path / "nest" / "sub" / "top_labels.tif")
    rc, _, err = cli(["train", image, tmp_path / "nest", "-o", tmp_path / "m.pt"], capsys)
    line = error_line(err)
    assert rc == 2 and "--recursive" not in line and " images" not in line, line
    sub = tmp_path / "nest" / "sub"
    assert (f"LABELS: the folder {tmp_path / 'nest'} holds no label files (.tif, " in line
            and f"its subfolders hold 1 (e.g. {sub / 'top_labels.tif'}), which are not "
            f"searched: give that folder ({sub}/) or a quoted glob" in line), line
    # IMAGES, and a folder with nothing below it either
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(["train", tmp_path / "nest", tmp_path / "empty", "-o",
                      tmp_path / "m.pt"], capsys)
    line = error_line(err)
    assert rc == 2 and f"IMAGES: the folder {tmp_path / 'nest'} holds no images" in line, line
    rc, _, err = cli(["train", image, tmp_path / "empty", "-o", tmp_path / "m.pt"], capsys)
    line = error_line(err)
    assert rc == 2 and line.endswith(f"LABELS: the folder {tmp_path / 'empty'} holds no label "
                                     "files (.tif, .tiff, .btf, .npy, .zarr, .png, .jpg, .jpeg)")


def test_a_resume_says_it_continues_only_when_it_does(tmp_path, samples, tiny_model, capsys):
    """`train --resume` printed "continuing the run saved in ..." before refusing another
    --epochs than saved, and before finding the schedule complete; the complete schedule now
    also says how to train longer (from the finished model)."""
    from cli_runner import tiny_train_argv

    out = tmp_path / "m.pt"
    argv = [a for a in tiny_train_argv(samples, samples / "ground_truth", out, tiny_model)
            if a != "-q"] + ["--resume", "--val-fraction", "0.34"]
    rc, _, err = cli(argv, capsys)
    assert rc == 0 and out.is_file() and "continuing the run" not in err, err
    rc, stdout, err = cli(argv, capsys)  # the schedule is complete
    assert rc == 0 and "continuing the run" not in err, err
    assert ("nothing was trained or written. To train longer, start from the finished model: "
            f"napari-sam train {samples} {samples / 'ground_truth'} --model {out} -o "
            f"{tmp_path / 'm_more.pt'} --epochs N") in stdout, stdout
    rc, _, err = cli([*argv, "--epochs", "2"], capsys)  # another schedule: refused
    assert rc == 2 and "epochs (saved 1, given 2)" in error_line(err)
    assert "continuing the run" not in err, err


def test_a_library_warning_during_training_is_printed_above_the_progress_bar(
        tmp_path, samples, tiny_model, capsys, monkeypatch):
    """A warning of a ``napari_sam.*`` logger during ``train`` (here from each training step)
    reached no stream a caller captures: Python's last-resort handler printed it raw (in a
    real process), glued to the epoch bar's line. It is a ``napari-sam:`` line of its own on
    stderr now, as the command's notes are (session 41)."""
    import logging

    from cli_runner import tiny_train_argv
    from napari_sam.training import trainer

    said = "the GPU ran out of memory; retrying the step with half the batch"
    real_step = trainer.Trainer.train_step

    def warning_step(self, items):
        logging.getLogger("napari_sam.training.trainer").warning("%s", said)
        return real_step(self, items)

    monkeypatch.setattr(trainer.Trainer, "train_step", warning_step)
    argv = [a for a in tiny_train_argv(samples, samples / "ground_truth", tmp_path / "m.pt",
                                       tiny_model) if a != "-q"]
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    assert err.splitlines().count(f"napari-sam: {said}") == 1, err
