"""Movies (``TZYX``) as a user meets them with the real CLI, session 42's sweep: a movie of
one time point, the time points of a prompts file written wrong, and a movie replaced
between an interrupted run and its rerun. Each asserts the exit code, the line the user
reads, the labels, and that the inputs are left as they were."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line, md5s
from napari_sam import io as nio
from stacks import blob_stack

pytestmark = pytest.mark.usefixtures("offline_cli")


def _imagej(path, data, axes):
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})
    return path


def _labels(path):
    return np.asarray(nio.read_image(path).data)


def test_a_movie_of_one_time_point_is_its_volume(tmp_path, capsys, tiny_model):
    """``(1, 4, 64, 64)`` given as ``--axes TZYX`` (ImageJ and OME drop a T of 1 themselves):
    one volume, ``ZYX`` labels equal to the volume's own, no movie note."""
    vol = blob_stack(z=4)
    np.save(tmp_path / "one.npy", vol[None])
    _imagej(tmp_path / "vol.tif", vol, "ZYX")
    run = ("--model", tiny_model, "--device", "cpu", "--points-per-side", "4")
    out = tmp_path / "out"
    rc, _, err = cli(["auto", tmp_path / "one.npy", "--axes", "TZYX", "-o", out, *run], capsys)
    assert rc == 0, err
    assert "time points" not in err
    rc, _, err = cli(["auto", tmp_path / "vol.tif", "-o", out, *run], capsys)
    assert rc == 0, err
    got = nio.read_image(out / "one_labels.tif")
    assert got.axes == "ZYX"
    np.testing.assert_array_equal(np.asarray(got.data), _labels(out / "vol_labels.tif"))


@pytest.mark.parametrize("value, said", [
    ("-1", "p.csv, line 2: time point -1 is negative; time points count from 0"),
    ("0.5", "p.csv, line 2: time point must be a whole number, got '0.5'"),
    ("x", "p.csv, line 2: time point must be a number, got 'x'"),
    ("", "p.csv, line 2: no time point for movie.tif, a movie of 2 time points; fill in its "
         "'t'"),
])
def test_a_time_point_written_wrong_is_named_before_any_work(tmp_path, capsys, value, said):
    """A movie's prompts with a negative, fractional, non-numeric or empty ``t`` (the next row
    right): exit 2 before any work, naming the line; the movie is left as it was."""
    movie = _imagej(tmp_path / "movie.tif", np.stack([blob_stack(z=4)] * 2), "TZYX")
    before = md5s(movie)
    (tmp_path / "p.csv").write_text(f"id,t,z,row,col\n1,{value},1,20,20\n1,1,1,20,44\n")
    rc, _, err = cli(["segment", movie, "-p", tmp_path / "p.csv", "-o", tmp_path / "o",
                      "--model", "demo", "--device", "cpu"], capsys)
    assert rc == 2
    assert error_line(err).startswith(f"napari-sam: error: {said}. "), err
    assert not (tmp_path / "o").exists() and md5s(movie) == before


def test_a_movie_replaced_after_an_interrupted_run_is_segmented_anew(tmp_path, capsys,
                                                                    tiny_model, monkeypatch):
    """Ctrl-C at time point 1 of 2, then the movie replaced by another (time points swapped,
    as a re-export in another order): the rerun keeps nothing of the old movie and writes
    what a clean run of the new one writes."""
    from napari_sam.batch import runners

    a, b = blob_stack(z=4, seed=0), np.ascontiguousarray(blob_stack(z=4, seed=1)[:, :, ::-1])
    (tmp_path / "new").mkdir()
    movie = _imagej(tmp_path / "movie.tif", np.stack([a, b]), "TZYX")
    clean = _imagej(tmp_path / "new" / "movie.tif", np.stack([b, a]), "TZYX")
    argv = ["auto", "--model", tiny_model, "--device", "cpu", "--points-per-side", "4"]
    rc, _, err = cli([*argv, clean, "-o", tmp_path / "clean"], capsys)
    assert rc == 0, err
    real = runners.RUNNERS["auto"]

    def interrupted(job, ctx, model):
        if ctx.time_point == 1:
            raise KeyboardInterrupt
        return real(job, ctx, model)

    monkeypatch.setitem(runners.RUNNERS, "auto", interrupted)
    out = tmp_path / "out"
    rc, _, err = cli([*argv, movie, "-o", out], capsys)
    assert rc == 130, err
    monkeypatch.setitem(runners.RUNNERS, "auto", real)
    movie.write_bytes(clean.read_bytes())
    rc, _, err = cli([*argv, movie, "-o", out], capsys)
    assert rc == 0, err
    assert "kept from the run before" not in err
    np.testing.assert_array_equal(_labels(out / "movie_labels.tif"),
                                  _labels(tmp_path / "clean" / "movie_labels.tif"))


def test_keep_work_redoes_only_the_time_point_whose_prompts_changed(tmp_path, capsys):
    """``segment --keep-work`` rerun with the prompts of time point 1 changed: time point 0 is
    kept (and said), time point 1 redone; the labels are a clean run's with the new prompts."""
    a, b = blob_stack(z=4, seed=0), np.ascontiguousarray(blob_stack(z=4, seed=1)[:, :, ::-1])
    movie = _imagej(tmp_path / "movie.tif", np.stack([a, b]), "TZYX")
    first, second = tmp_path / "p1.csv", tmp_path / "p2.csv"
    first.write_text("id,t,z,row,col\n1,0,1,20,20\n1,1,1,20,44\n")
    second.write_text("id,t,z,row,col\n1,0,1,20,20\n1,1,2,44,20\n")
    run = ("--model", "demo", "--device", "cpu")
    out = tmp_path / "out"
    rc, _, err = cli(["segment", movie, "-p", first, "-o", out, "--keep-work", *run], capsys)
    assert rc == 0, err
    rc, _, err = cli(["segment", movie, "-p", second, "-o", out, "--keep-work", *run], capsys)
    said = " ".join(err.split())
    assert rc == 0, err
    assert ("movie.tif: time point 0 kept from the run before (the same settings and prompts); "
            "going on at time point 1 of 2") in said and "recomputed: the prompts changed" in said
    rc, _, err = cli(["segment", movie, "-p", second, "-o", tmp_path / "clean", *run], capsys)
    assert rc == 0, err
    np.testing.assert_array_equal(_labels(out / "movie_labels.tif"),
                                  _labels(tmp_path / "clean" / "movie_labels.tif"))


def test_t_and_z_columns_on_a_movie_of_2d_frames_say_to_give_t_alone(tmp_path, capsys):
    """``id,t,z,row,col`` on a ``TYX`` movie (frames, no volumes): it said "is not a movie
    of volumes ... leave its 't' empty", the opposite of what such a file needs. Now it says
    the frames are its slices and to give them in 't' alone, which runs."""
    movie = _imagej(tmp_path / "tyx.tif", blob_stack(z=4), "TYX")
    (tmp_path / "tz.csv").write_text("id,t,z,row,col\n1,1,0,20,20\n")
    (tmp_path / "t.csv").write_text("id,t,row,col\n1,1,20,20\n")
    run = ("--model", "demo", "--device", "cpu")
    rc, _, err = cli(["segment", movie, "-p", tmp_path / "tz.csv", "-o", tmp_path / "o", *run],
                     capsys)
    assert rc == 2 and not (tmp_path / "o").exists()
    assert error_line(err).startswith(
        "napari-sam: error: tz.csv, line 2: time point 1 beside a slice, but tyx.tif is a movie "
        "of 2D frames (axes TYX): its frames are its slices; give each prompt's frame in 't' "
        "alone, without a 'z' column (CSV: id,t,row,col). "), err
    rc, _, err = cli(["segment", movie, "-p", tmp_path / "t.csv", "-o", tmp_path / "o", *run],
                     capsys)
    assert rc == 0 and _labels(tmp_path / "o" / "tyx_labels.tif")[1].any(), err
