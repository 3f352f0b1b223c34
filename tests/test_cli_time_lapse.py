"""Movies of volumes (TZYX, TZCYX with --channel) in `napari-sam auto` and `segment`: each
time point segmented as its own volume, into one TZYX label file; resumed at the time point
an interrupted run reached; prompts addressed to time points by a `t` column."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_runner import cli, record_embedding_bars
from napari_sam import io as nio
from stacks import blob_stack

pytestmark = pytest.mark.usefixtures("offline_cli")

DEMO = ("--model", "demo", "--device", "cpu")
AUTO = ("--points-per-side", "8", *DEMO)


def _volumes():
    """Two different (4, 64, 64) volumes: the blob stack, and another seed's, mirrored."""
    return blob_stack(z=4, seed=0), np.ascontiguousarray(blob_stack(z=4, seed=1)[:, :, ::-1])


def _write(path, data, axes):
    """An ImageJ TIFF of ``data`` with ``axes``, 2 um between slices, 0.5 um pixels."""
    tifffile.imwrite(path, data, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": axes, "spacing": 2.0, "unit": "um"})
    return path


def _movie_and_volumes(tmp_path):
    """movie.tif (TZYX: the two volumes as t=0 and t=1), t0.tif and t1.tif (ZYX)."""
    a, b = _volumes()
    data = tmp_path / "data"
    data.mkdir()
    return (_write(data / "movie.tif", np.stack([a, b]), "TZYX"),
            _write(data / "t0.tif", a, "ZYX"), _write(data / "t1.tif", b, "ZYX"))


def _labels(path):
    return np.asarray(nio.read_image(path).data)


def test_auto_segments_each_time_point_of_a_movie_as_its_own_volume(tmp_path, capsys):
    """`auto` on a TZYX movie was refused ("save one time point per file"); each time point's
    labels are now those of the same volume run alone, the ids of t=1 numbered on from t=0's,
    in one TZYX file with the movie's voxel size, and the run says nothing is tracked."""
    movie, t0, t1 = _movie_and_volumes(tmp_path)
    out = tmp_path / "out"
    rc, _, err = cli(["auto", movie, t0, t1, "-o", out, *AUTO], capsys)
    assert rc == 0, err
    said = " ".join(err.split())
    assert ("movie.tif: 2 time points, each segmented as its own volume: objects are not "
            "tracked between time points (ids: numbered on from the time point before, so "
            "that no id names objects at two time points)") in said
    got = nio.read_image(out / "movie_labels.tif")
    assert got.axes == "TZYX" and got.shape == (2, 4, 64, 64)
    assert got.pixel_size == pytest.approx((2.0, 0.5, 0.5)) and got.unit == "um"
    movie_labels = np.asarray(got.data)
    alone0, alone1 = _labels(out / "t0_labels.tif"), _labels(out / "t1_labels.tif")
    assert alone0.max() >= 2 and alone1.max() >= 2  # both volumes give objects
    np.testing.assert_array_equal(movie_labels[0], alone0)
    np.testing.assert_array_equal(movie_labels[1], np.where(alone1 > 0, alone1 + alone0.max(), 0))
    meta = json.loads((out / "movie_labels.tif.json").read_text())
    assert meta["extra"]["axes"] == "TZYX" and meta["extra"]["time_lapse"]["tracked"] is False
    per_t = {(o["time_point"], o["id"]) for o in meta["objects"]}
    n0 = int(alone0.max())
    assert per_t == {(0, i) for i in range(1, n0 + 1)} | {
        (1, n0 + i) for i in range(1, int(alone1.max()) + 1)}
    assert not (out / ".napari-sam-work").exists()  # the time points' files went with it
    traces = [p["trace"] for p in meta["extra"]["time_lapse"]["per_time_point"]]
    assert [{o["id"] for o in tr["objects"]} for tr in traces] == [
        {i for t, i in per_t if t == 0}, {i for t, i in per_t if t == 1}]  # the movie's ids
    rc, text, err = cli(["report", out / "movie_labels.tif"], capsys)  # one plot a time point
    pngs = [line for line in text.splitlines() if line.endswith(".png")]
    assert rc == 0 and pngs == [str(out / f"movie_labels.tif.t{t}.trace.png") for t in (0, 1)]
    rc, _, err = cli(["auto", movie, "-o", out, *AUTO], capsys)  # complete: skipped
    assert rc == 0 and "skipped  movie.tif:" in err and "is complete" in err, err


def test_segment_prompts_each_time_point_through_a_t_column(tmp_path, capsys, monkeypatch):
    """`segment` on a movie: a `t` column beside `z` says which time point a prompt is on;
    each time point's labels are those of its volume prompted alone, with the prompts' ids;
    the progress bars name the time point."""
    movie, t0, t1 = _movie_and_volumes(tmp_path)
    bars = record_embedding_bars(monkeypatch)
    both = tmp_path / "both.csv"
    both.write_text("id,t,z,row,col\n1,0,1,20,20\n2,0,2,44,44\n1,1,1,20,44\n")
    (tmp_path / "p0.csv").write_text("id,z,row,col\n1,1,20,20\n2,2,44,44\n")
    (tmp_path / "p1.csv").write_text("id,z,row,col\n1,1,20,44\n")
    out = tmp_path / "out"
    rc, _, err = cli(["segment", movie, "--prompts", both, "-o", out, *DEMO], capsys)
    assert rc == 0, err
    assert "(ids: the prompts' object ids at every time point)" in " ".join(err.split())
    assert [b.desc for b in bars] == [f"movie.tif (t={t} of 2): embed" for t in (0, 1)]
    for name, csv in (("t0", "p0.csv"), ("t1", "p1.csv")):
        rc, _, err = cli(["segment", tmp_path / "data" / f"{name}.tif", "--prompts",
                          tmp_path / csv, "-o", out, *DEMO], capsys)
        assert rc == 0, err
    got = _labels(out / "movie_labels.tif")
    alone0, alone1 = _labels(out / "t0_labels.tif"), _labels(out / "t1_labels.tif")
    assert set(np.unique(alone0)) == {0, 1, 2} and set(np.unique(alone1)) == {0, 1}
    np.testing.assert_array_equal(got[0], alone0)
    np.testing.assert_array_equal(got[1], alone1)


def test_segment_on_a_movie_without_time_points_in_its_prompts_says_how(tmp_path, capsys):
    """Prompts without a time point on a movie, or with one out of range, stop the run before
    any work (exit 2), naming the fix; a time point on a plain stack is refused too."""
    movie, t0, _ = _movie_and_volumes(tmp_path)
    flat = tmp_path / "flat.csv"
    flat.write_text("id,z,row,col\n1,1,20,20\n")
    rc, _, err = cli(["segment", movie, "--prompts", flat, "-o", tmp_path / "o", *DEMO], capsys)
    said = " ".join(err.split())
    assert rc == 2 and ("movie.tif is a movie of 2 time points (axes TZYX, each segmented as "
                        "its own volume), and its prompts say no time point: add a 't' column "
                        "beside 'z' (CSV: t,z,row,col, time points from 0; JSON: \"time\" in "
                        "each prompt)") in said, said
    late = tmp_path / "late.csv"
    late.write_text("id,t,z,row,col\n1,0,1,20,20\n1,2,1,20,20\n")
    rc, _, err = cli(["segment", movie, "--prompts", late, "-o", tmp_path / "o", *DEMO], capsys)
    said = " ".join(err.split())
    assert rc == 2 and ("late.csv, line 3: time point 2 is out of range of movie.tif (2 time "
                        "points, 0-1)") in said, said
    rc, _, err = cli(["segment", t0, "--prompts", late, "-o", tmp_path / "o", *DEMO], capsys)
    said = " ".join(err.split())
    assert rc == 2 and ("late.csv, line 3: time point 2, but t0.tif is not a movie of volumes "
                        "(axes ZYX)") in said, said
    assert not (tmp_path / "o").exists()


def test_prompts_at_later_time_points_only_segment_those(tmp_path, capsys):
    """Prompts at time point 1 alone (none at t=0): t=0 stays 0 and t=1 is its volume
    prompted alone, as documented (was: exit 1, "no prompts for this file in the prompts
    file": the first run, given t=0's prompts, refused before it found the movie)."""
    movie, _, t1 = _movie_and_volumes(tmp_path)
    (tmp_path / "late.csv").write_text("id,t,z,row,col\n1,1,1,20,44\n")
    (tmp_path / "p1.csv").write_text("id,z,row,col\n1,1,20,44\n")
    out = tmp_path / "out"
    rc, _, err = cli(["segment", movie, "-p", tmp_path / "late.csv", "-o", out, *DEMO], capsys)
    assert rc == 0, err
    rc, _, err = cli(["segment", t1, "-p", tmp_path / "p1.csv", "-o", out, *DEMO], capsys)
    assert rc == 0, err
    got, alone1 = _labels(out / "movie_labels.tif"), _labels(out / "t1_labels.tif")
    assert got.shape == (2, 4, 64, 64) and not got[0].any()
    assert set(np.unique(alone1)) == {0, 1}
    np.testing.assert_array_equal(got[1], alone1)
    meta = json.loads((out / "movie_labels.tif.json").read_text())
    assert [(o["id"], o["time_point"]) for o in meta["objects"]] == [(1, 1)]


def test_a_t_column_without_z_on_a_movie_says_it_is_read_as_the_slice(tmp_path, capsys):
    """``id,t,row,col`` on a TZYX movie: ``t`` alone is the slice (a TYX movie's prompts), so
    the prompts have no time point; the error said "add a 't' column beside 'z'" to a file
    that has one. Now it says how its 't' was read."""
    movie, _, _ = _movie_and_volumes(tmp_path)
    (tmp_path / "t.csv").write_text("id,t,row,col\n1,1,20,20\n")
    rc, _, err = cli(["segment", movie, "-p", tmp_path / "t.csv", "-o", tmp_path / "o", *DEMO],
                     capsys)
    said = " ".join(err.split())
    assert rc == 2 and not (tmp_path / "o").exists()
    assert ("movie.tif is a movie of 2 time points (axes TZYX, each segmented as its own "
            "volume), and its prompts say no time point: their 't' column, without a 'z' "
            "column beside it, is read as the slice (as in a TYX movie's prompts); add a 't' "
            "column beside 'z' (CSV: t,z,row,col") in said, said


def test_an_interrupted_movie_resumes_at_the_time_point_it_reached(tmp_path, capsys, tiny_model,
                                                                   monkeypatch):
    """Ctrl-C while the second time point runs; the rerun keeps the first (not segmented
    again), says where it resumes, and writes what an uninterrupted run writes."""
    from napari_sam.batch import runners

    movie, _, _ = _movie_and_volumes(tmp_path)
    argv = ["auto", movie, "--model", tiny_model, "--device", "cpu", "--points-per-side", "4"]
    rc, _, err = cli([*argv, "-o", tmp_path / "clean"], capsys)
    assert rc == 0, err
    real, ran = runners.RUNNERS["auto"], []

    def interrupted(job, ctx, model):
        if ctx.time_point is not None:  # (None: the whole movie, which it hands on)
            ran.append(ctx.time_point)
        if ctx.time_point == 1 and len(ran) == 2:  # the first run, at its second time point
            raise KeyboardInterrupt
        return real(job, ctx, model)

    monkeypatch.setitem(runners.RUNNERS, "auto", interrupted)
    out = tmp_path / "out"
    rc, _, err = cli([*argv, "-o", out], capsys)
    assert rc == 130 and not (out / "movie_labels.tif").exists(), err
    rc, _, err = cli([*argv, "-o", out], capsys)
    assert rc == 0, err
    assert ran == [0, 1, 1]  # t=0 once
    assert ("movie.tif: time point 0 kept from the run before (the same settings and "
            "prompts); going on at time point 1 of 2") in " ".join(err.split())
    np.testing.assert_array_equal(_labels(out / "movie_labels.tif"),
                                  _labels(tmp_path / "clean" / "movie_labels.tif"))


def test_a_movie_with_channels_is_segmented_in_the_channel_given(tmp_path, capsys, tiny_model):
    """TZCYX with --channel 1: the labels of the TZYX movie of that channel; without
    --channel, the channels are refused as before."""
    a, b = _volumes()
    movie = np.stack([a, b])
    noise = np.random.default_rng(3).normal(20, 3, movie.shape).astype(np.float32)
    data = tmp_path / "data"
    data.mkdir()
    five = _write(data / "five.tif", np.stack([noise, movie], axis=2), "TZCYX")
    four = _write(data / "four.tif", movie, "TZYX")
    argv = ["--model", tiny_model, "--device", "cpu", "--points-per-side", "4"]
    rc, _, err = cli(["auto", five, "-o", tmp_path / "out", "--channel", "1", *argv], capsys)
    assert rc == 0, err
    rc, _, err = cli(["auto", four, "-o", tmp_path / "out", *argv], capsys)
    assert rc == 0, err
    np.testing.assert_array_equal(_labels(tmp_path / "out" / "five_labels.tif"),
                                  _labels(tmp_path / "out" / "four_labels.tif"))
    rc, _, err = cli(["auto", five, "-o", tmp_path / "o2", *argv], capsys)
    assert rc == 1 and "The data has 2 channels" in err and "--channel N" in err


def test_a_4d_tiff_without_axes_names_tzyx_as_a_choice_that_runs(tmp_path, capsys, tiny_model):
    """A 4D TIFF whose axes are guessed is not taken for a movie (its short axis may hold
    channels); its message names --axes TZYX beside the channels' hint, and that runs."""
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.stack([blob_stack(), blob_stack(seed=1)]),
                     photometric="minisblack")  # (2, 6, 64, 64)
    argv = ["--model", tiny_model, "--device", "cpu", "--points-per-side", "4"]
    rc, _, err = cli(["auto", plain, "-o", tmp_path / "out", *argv], capsys)
    said = " ".join(err.split())
    assert rc == 1 and ("If an axis holds channels, say so: --axes CZYX --channel N; if it "
                        "is a movie of volumes (time, z, y, x), say so: --axes TZYX") in said
    rc, _, err = cli(["auto", plain, "-o", tmp_path / "out", "--axes", "TZYX", *argv], capsys)
    assert rc == 0, err
    assert nio.read_image(tmp_path / "out" / "plain_labels.tif").axes == "TZYX"


def test_a_lazy_movie_is_read_one_time_point_at_a_time(tmp_path, capsys, tiny_model,
                                                       monkeypatch):
    """A movie read lazily (a memory map, a zarr store) is never read whole: every read
    names one time point (the movie's reader is wrapped to record what is asked of it)."""
    movie, _, _ = _movie_and_volumes(tmp_path)
    keys, read = [], nio.read_image

    class Recording:  # a lazy array: what the movie's reader hands out, reads recorded
        def __init__(self, data):
            self._data, self.shape, self.dtype = data, data.shape, data.dtype

        def __getitem__(self, key):
            keys.append(key)
            return self._data[key]

    def reading(path, *args, **kwargs):
        img = read(path, *args, **kwargs)
        if str(path) == str(movie):
            img.data = Recording(np.asarray(img.data))
        return img

    monkeypatch.setattr(nio, "read_image", reading)
    rc, _, err = cli(["auto", movie, "-o", tmp_path / "out", "--model", tiny_model, "--device",
                      "cpu", "--points-per-side", "4"], capsys)
    assert rc == 0, err
    assert keys and all(isinstance(k, tuple) and isinstance(k[0], int) for k in keys), keys
    assert {k[0] for k in keys} == {0, 1}


def test_a_session_file_is_not_replayed_on_a_movie(files, tiny_sam, tmp_path, capsys):
    """A volume's session holds the clicks of one volume: on a movie its replay fails for that
    file (exit 1), saying what to do instead; nothing is written for it."""
    from napari_sam import session as S
    from test_session import make_session

    session = S.write_session(make_session(files, tiny_sam), tmp_path / "s.json")
    movie = _write(tmp_path / "movie.tif", np.stack([blob_stack(), blob_stack(seed=1)]), "TZYX")
    rc, _, err = cli(["segment", movie, "--prompts", session, "-o", tmp_path / "out",
                      "--model", files["model"], "--device", "cpu"], capsys)
    said = " ".join(err.split())
    assert rc == 1 and ("s.json is a session of one volume (made on blobs), and movie.tif is "
                        "a movie of 2 time points; replay it on the image it was made on, or "
                        "prompt this movie with a prompts file with a 't' column") in said, said
    assert not (tmp_path / "out" / "movie_labels.tif").exists()


def _movie_session(files, model, tmp_path, channels: bool = False):
    """``(session file, movie file, expected (3, 6, 64, 64) labels)``: a dock's session of a
    movie of three blob stacks, its first commit at time point 0, the other two at 1, none
    at 2, where its labels layer held label 7 before (its base); the expected labels each
    time point's commits replayed on its volume alone, and that base at 2. ``channels``: the
    movie is TZCYX, the blob stacks its channel 1 (channel 0 flipped and dimmer), the
    session made with channel 1 picked alone."""
    import dataclasses

    import napari_sam as ns
    from napari_sam import session as S
    from test_session import make_session

    volumes = [blob_stack(), blob_stack(seed=1), blob_stack(seed=2)]
    movie = _write(tmp_path / "movie.tif", np.stack(volumes), "TZYX") if not channels else (
        _write(tmp_path / "movie.tif", np.stack([np.stack([v[:, ::-1] / 2, v], axis=1)
                                                 for v in volumes]), "TZCYX"))
    base = np.zeros((3, 6, 64, 64), np.uint32)
    base[2, 1:3, 5:9, 50:60] = 7
    sess = make_session(files, model)
    ops = [{**op, "time_point": t} for op, t in zip(sess.operations, (0, 1, 1))]
    expected = np.stack([S.replay(dataclasses.replace(
        sess, operations=[op for op in ops if op["time_point"] == t]),
        ns.embed(volumes[t], model, device="cpu")).labels for t in (0, 1)] + [base[2]])
    sess = dataclasses.replace(sess, operations=ops, labels=expected, base=base, image={
        "path": str(movie), "name": "movie", "shape": [6, 64, 64], "time_points": 3,
        "time_axis": 0, "hash": S.image_hash(np.concatenate(volumes)),  # (the dock's)
        **({"channel_axis": 2, "channel": 1} if channels else {})})
    return S.write_session(sess, tmp_path / "m.json"), movie, expected


def test_a_movie_session_is_replayed_each_commit_at_its_time_point(files, tiny_sam,
                                                                   tmp_path, capsys):
    """A dock's session of a movie (commits at time points 0 and 1, none at 2) replays on
    that movie: each time point's commits on its volume, the labels those of the dock (at 2
    what its labels layer held before: the session's base)."""
    session, movie, expected = _movie_session(files, tiny_sam, tmp_path)
    assert [len(np.unique(v)) for v in expected] == [2, 3, 2]  # 1 object at t=0, 2 at t=1
    rc, _, err = cli(["segment", movie, "--prompts", session, "-o", tmp_path / "out",
                      "--model", files["model"], "--device", "cpu"], capsys)
    assert rc == 0, err
    np.testing.assert_array_equal(_labels(tmp_path / "out" / "movie_labels.tif"), expected)

    volume = _write(tmp_path / "t0.tif", blob_stack(), "ZYX")  # not a movie: refused
    rc, _, err = cli(["segment", volume, "--prompts", session, "-o", tmp_path / "out2",
                      "--model", files["model"], "--device", "cpu"], capsys)
    said = " ".join(err.split())
    assert rc == 1 and ("m.json is the session of a movie of 3 time points, and t0.tif is "
                        "not a movie; replay it on the movie it was made on") in said, said


def test_a_movie_session_made_on_one_channel_replays_on_that_channel(files, tiny_sam,
                                                                     tmp_path, capsys):
    """A dock's session of a TZCYX movie with channel 1 picked, replayed without --channel:
    each time point on channel 1 (as the dock segmented it), put together into the movie's
    labels (was: every time point replayed, then 'FAILED movie.tif: The data has 2
    channels ... Pick one channel', no labels written)."""
    session, movie, expected = _movie_session(files, tiny_sam, tmp_path, channels=True)
    rc, _, err = cli(["segment", movie, "--prompts", session, "-o", tmp_path / "out",
                      "--model", files["model"], "--device", "cpu"], capsys)
    assert rc == 0, err
    np.testing.assert_array_equal(_labels(tmp_path / "out" / "movie_labels.tif"), expected)


def test_a_movie_session_corrected_by_hand_is_said_so_not_another_image(files, tiny_sam,
                                                                        tmp_path, capsys):
    """A movie's session whose labels at time point 1 were corrected with the brush, replayed
    on its movie with its model: the changed object is put down to painting (was: '(replayed
    with another image; the model seeing contrast limits ... (the session's: ...)': each time
    point's hash was compared with the whole movie's, and its limits with those of the time
    point shown when the session was saved)."""
    import dataclasses

    import napari_sam as ns
    from napari_sam import session as S

    path, movie, expected = _movie_session(files, tiny_sam, tmp_path)
    sess = S.read_session(path)
    painted = np.array(sess.labels, copy=True)
    z, r, c = np.argwhere(painted[1] == 1)[0]
    painted[1, z, r:r + 2, c:c + 2] = 0  # erased by hand
    S.write_session(dataclasses.replace(
        sess, labels=painted, model={**sess.model, "id": ns.load_model(files["model"]).model_id},
        image={**sess.image, "embedding_contrast_limits": [1.0, 2.0]}), path)
    rc, _, err = cli(["segment", movie, "--prompts", path, "-o", tmp_path / "out",
                      "--model", files["model"], "--device", "cpu"], capsys)
    said = " ".join(err.split())
    assert rc == 0, err
    assert "movie.tif (t=1 of 3): object 1: changed" in said, said
    assert ("(the same image, model, device and precision: a changed object is most likely one "
            "corrected by hand") in said, said
    assert "another image" not in said and "contrast limits" not in said, said
    np.testing.assert_array_equal(_labels(tmp_path / "out" / "movie_labels.tif"), expected)
