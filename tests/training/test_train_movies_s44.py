"""``napari-sam train`` on a movie of volumes (a TZYX TIFF whose metadata names its axes):
with its (T, Z, Y, X) labels it stopped with "labels must be 2D (Y, X) or a 3D stack
(Z, Y, X)"; with the movie's dock session each time point's labels TIFF was paired with the
whole movie (one kept, the others "left out", then a shape mismatch). Now each time point's
volume is a training stack with that time point's labels, each time point its own item for
the validation split, and a movie given one volume of labels is refused with what to do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line, tiny_train_argv

T, Z = 3, 6
_CENTRES = ((20, 20), (44, 44), (20, 44))


def _movie_labels() -> np.ndarray:
    """(T, Z, 64, 64) uint16: time point t holds t + 1 discs (ids 1..t+1) on every slice, so
    the objects trained on tell which labels each time point was paired with."""
    yy, xx = np.mgrid[:64, :64]
    out = np.zeros((T, Z, 64, 64), np.uint16)
    for t in range(T):
        for oid, (r, c) in enumerate(_CENTRES[: t + 1], start=1):
            out[t, :, (yy - r) ** 2 + (xx - c) ** 2 < 64] = oid
    return out


#: every slice of time point t has t + 1 objects: 6 * (1 + 2 + 3)
_OBJECTS = Z * sum(range(1, T + 1))


@pytest.fixture
def movie(tmp_path):
    """``d/movie.tif``: a (T, Z, Y, X) movie, its axes named in its metadata."""
    from stacks import blob_movie

    d = tmp_path / "d"
    d.mkdir()
    path = d / "movie.tif"
    tifffile.imwrite(path, blob_movie(t=T), metadata={"axes": "TZYX"})
    return path


def _record(out) -> dict:
    return json.loads(out.with_suffix(".json").read_text())["data"]


def test_a_movie_with_tzyx_labels_trains_each_time_point_as_a_stack(movie, tmp_path,
                                                                    tiny_model, capsys):
    from napari_sam import io as nio

    nio.write_labels(movie.with_name("movie_labels.tif"), _movie_labels(), axes="TZYX")
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(movie.parent, movie.parent, out, tiny_model), capsys)
    assert rc == 0 and out.is_file(), err
    data = _record(out)
    assert data["n_images"] == T and data["n_objects"] == _OBJECTS, data
    assert all(f"movie.tif[t={t}]" in data["description"] for t in range(T)), data
    # whole time points are held out: the items of one time point (its Z slices)
    assert data["n_val_items"] == Z and data["n_train_items"] == (T - 1) * Z, data


def test_the_split_note_says_whole_time_points_are_held_out(movie, tmp_path, tiny_model,
                                                           capsys):
    from napari_sam import io as nio

    labels = _movie_labels()
    labels[1] = 0  # a time point not annotated: left out, said
    nio.write_labels(movie.with_name("movie_labels.tif"), labels, axes="TZYX")
    argv = [a for a in tiny_train_argv(movie.parent, movie.parent, tmp_path / "m.pt",
                                       tiny_model) if a != "-q"]
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    # (was: "training on 1 image file")
    assert f"napari-sam: training on 1 movie of {T} time points from " in err, err
    assert (f"{movie}: a movie of {T} time points: each of the 2 time points with labels "
            "(t=0, 2) is a training stack of its own") in err, err
    assert "time points without labels (t=1) are left out" in err, err
    assert "the validation split holds out whole time points" in err, err
    assert _record(tmp_path / "m.pt")["n_images"] == 2


@pytest.mark.parametrize("suffix", [".tif", ".npy"])
def test_a_movie_and_its_dock_session_pair_each_time_point(movie, tmp_path, tiny_model,
                                                          capsys, suffix):
    """Also a movie whose file names no axes (a .npy), which the dock took for a movie: its
    session's labels say so."""
    from napari_sam import session as S

    if suffix == ".npy":
        np.save(movie.with_suffix(".npy"), tifffile.imread(movie))
        movie.unlink()
        movie = movie.with_suffix(".npy")
    labels = _movie_labels().astype(np.uint32)
    image = {"path": str(movie), "name": "movie", "shape": [Z, 64, 64],
             "layer_shape": [T, Z, 64, 64], "time_points": T, "time_axis": 0}
    path = S.write_session(S.Session(image=image, model={"name": "demo", "is_file": False},
                                     labels=labels), S.session_file_for(movie))
    assert len(json.loads(path.read_text())["labels"]["time_points"]) == T
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(movie.parent, movie.parent, out, tiny_model), capsys)
    assert rc == 0 and out.is_file(), err
    assert "left out" not in err and "may hold other labels" not in err, err
    data = _record(out)
    assert data["n_images"] == T and data["n_objects"] == _OBJECTS, data


def test_a_movie_with_one_volume_of_labels_is_refused_with_what_to_do(movie, tmp_path,
                                                                     capsys):
    labels = movie.with_name("movie_labels.tif")
    tifffile.imwrite(labels, _movie_labels()[2], metadata={"axes": "ZYX"})
    rc, _, err = cli(tiny_train_argv(movie.parent, movie.parent, tmp_path / "m.pt", "demo"),
                     capsys)
    line = error_line(err)
    assert rc == 2 and (f"{movie} is a movie of {T} time points of (Z, Y, X) volumes "
                        f"(axes TZYX from its metadata), but the label file {labels} is one "
                        f"volume of shape ({Z}, 64, 64)") in line, line
    assert "give (T, Z, Y, X) labels" in line


def test_4d_labels_beside_an_image_without_named_axes_say_how_to_name_them(tmp_path, capsys):
    """A .npy movie has no axes in its file: not taken for a movie (a short axis may hold
    channels); its 4D labels are refused with how to name the axes."""
    from stacks import blob_movie

    d = tmp_path / "d"
    d.mkdir()
    np.save(d / "movie.npy", blob_movie(t=T))
    np.save(d / "movie_labels.npy", _movie_labels())
    rc, _, err = cli(tiny_train_argv(d, d, tmp_path / "m.pt", "demo"), capsys)
    line = error_line(err)
    assert rc == 2 and (f"labels must be 2D (Y, X) or a 3D stack (Z, Y, X), got shape "
                        f"({T}, {Z}, 64, 64); a movie of volumes (T, Z, Y, X) is trained on "
                        "time point by time point when its image file's metadata names its "
                        "axes") in line, line


def test_a_multichannel_movie_says_so_and_how_to_save_one_channel(tmp_path, tiny_model,
                                                                 capsys, monkeypatch):
    """A TZCYX movie of 2 channels stopped with "Pick one channel with channel=N (--channel
    N on the command line)", an option `train` does not have, exit 1. Now it is named a
    multichannel movie (exit 2) with the code that saves one channel as a movie of its own,
    and training on what that code writes works, with the command as the shell reads it (in
    a folder whose name has a space: the label file's path was not quoted)."""
    import shlex

    from stacks import blob_movie

    d = tmp_path / "my data"
    d.mkdir()
    movie = d / "movie.tif"
    two = np.stack([blob_movie(t=T), blob_movie(t=T)[:, :, :, ::-1]], axis=2)  # T, Z, C, Y, X
    tifffile.imwrite(movie, two, metadata={"axes": "TZCYX"})
    labels = d / "movie_labels.tif"
    tifffile.imwrite(labels, _movie_labels(), metadata={"axes": "TZYX"})
    rc, _, err = cli(tiny_train_argv(d, d, tmp_path / "m.pt", tiny_model), capsys)
    line = error_line(err)
    assert rc == 2 and (f"{movie} is a multichannel movie: {T} time points of (Z, Y, X) "
                        "volumes with 2 channels (axes TZCYX from its metadata); training "
                        "takes one channel") in line, line
    assert "`train` has no channel option" in line and "--channel N on the" not in line
    code = line.split("in Python: ", 1)[1].split("; then train", 1)[0]
    assert code.endswith("[:, :, 0], photometric='minisblack', metadata={'axes': 'TZYX'})"), code
    command = shlex.split(line.split("with the same labels: ", 1)[1])  # as the shell reads it
    one = d / "movie_channel0.tif"  # (beside the movie: s46)
    assert command == ["napari-sam", "train", str(one), str(labels), "-o", "FILE.pt"], line
    monkeypatch.chdir(tmp_path)
    exec(code, {})  # what the message says to run
    assert np.array_equal(tifffile.imread(one), two[:, :, 0])
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(*command[2:4], out, tiny_model), capsys)
    assert rc == 0 and out.is_file(), err
    assert _record(out)["n_images"] == T


def test_what_is_trained_on_counts_movies_and_their_time_points(movie):
    """The line before training counts movies and their time points beside image files."""
    from napari_sam import io as nio
    from napari_sam.training.movies import trained_on_words
    from stacks import blob_movie, blob_stack

    labels = movie.with_name("movie_labels.tif")
    nio.write_labels(labels, _movie_labels(), axes="TZYX")
    other = movie.with_name("other.tif")
    tifffile.imwrite(other, blob_movie(t=5), metadata={"axes": "TZYX"})
    plain = movie.with_name("plain.tif")
    tifffile.imwrite(plain, blob_stack())
    assert trained_on_words([movie], [labels]) == f"1 movie of {T} time points"
    assert trained_on_words([plain, movie, other], [labels] * 3) == (
        f"1 image file and 2 movies of {T + 5} time points in all")
    assert trained_on_words([plain, plain], [labels] * 2) == "2 image files"


def test_a_multichannel_movie_with_labels_given_as_an_array_says_the_python_call(tmp_path):
    """``train(images='movie.tif', labels=array)`` on a TZCYX movie of 2 channels: the
    message's last step named `napari-sam train channel0.tif labels[0] -o FILE.pt`, a file
    ``labels[0]`` that is no file; now the Python call with the same array."""
    from napari_sam.training.data import TrainingDataError, load_pairs
    from stacks import blob_movie

    movie = tmp_path / "movie.tif"
    two = np.stack([blob_movie(t=T), blob_movie(t=T)], axis=2)  # T, Z, C, Y, X
    tifffile.imwrite(movie, two, metadata={"axes": "TZCYX"})
    with pytest.raises(TrainingDataError) as info:
        load_pairs([movie], [_movie_labels()])
    message = str(info.value)
    assert message.startswith(f"{movie} is a multichannel movie: {T} time points"), message
    one = str(tmp_path / "movie_channel0.tif")
    assert message.endswith(f"; then train on it with the same labels: train({one!r}, "
                            "labels) with the array you gave as labels[0]"), message
    assert "napari-sam train" not in message, message
