"""Sessions of a (T, Z, Y, X) movie in the dock: they were refused ("a session file holds
the clicks of one volume"), so napari dying lost every commit of a movie. Now a movie's
session holds the labels of every time point and the time point of each commit: saved and
loaded, autosaved and resumed by a fresh dock, each commit back at its own time point (the
time slider stays where it is); a session of a volume is not loaded onto a movie, nor the
reverse, nor one of a movie of another number of time points."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sam_qt_helpers import (
    blob_movie,
    blob_stack,
    canvas_click,
    commit_at_time,
    dock_on,
    use_predictor,
)

from napari_sam import session as S
from napari_sam.annotate.errors import UserError

T = 5  # (longer than MAX_CHANNELS: read as time, not channels)


_commit_at = commit_at_time  # (move the time slider to t, commit at (z, row, 20))


def _per_time(labels: np.ndarray) -> dict[int, list[int]]:
    """{time point: its label values but 0} of (T, Z, Y, X) labels."""
    return {t: sorted(set(np.unique(labels[t]).tolist()) - {0}) for t in range(len(labels))}


def test_a_movie_session_saved_with_commits_at_two_time_points_loads_back(
        make_widget, tiny_predictor, tmp_path):
    movie = blob_movie(T)
    viewer, widget = make_widget(movie, name="movie")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    _commit_at(viewer, widget, 0, 3, 20)
    _commit_at(viewer, widget, 3, 2, 44)
    labels = np.array(c.target_layer.data)
    assert _per_time(labels) == {0: [1], 1: [], 2: [], 3: [1], 4: []}, c.status
    # a movie without a file: autosaved under the cache folder by its pixels' hash
    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    auto = c.autosave_path()
    assert auto.is_relative_to(memory_sessions_folder()), auto
    assert np.array_equal(S.read_session(auto).labels, labels)
    canvas_click(viewer, 30, 50)  # uncommitted prompts at t=3 (slice 2) and t=0 (slice 3)
    viewer.dims.set_current_step(0, 0)
    widget.wait()
    viewer.dims.set_point(1, 3)
    canvas_click(viewer, 50, 30)
    widget.wait()
    pending = sorted(map(tuple, np.round(c.points_layer.data).astype(int).tolist()))
    assert pending == [(0, 3, 50, 30), (3, 2, 30, 50)]
    path = c.save_session(tmp_path / "movie.json")
    assert c.status.startswith("Saved the session (2 commits)"), c.status
    record = json.loads(path.read_text())
    assert record["image"]["time_points"] == T and record["image"]["shape"] == [6, 64, 64]
    assert [(op["time_point"], op["slice"]) for op in record["operations"]] == [(0, 3), (3, 2)]
    saved = S.read_session(path)
    assert saved.labels.shape == movie.shape and np.array_equal(saved.labels, labels)

    other, w2 = make_widget(movie, name="movie")  # a fresh dock, the slider at t=1
    use_predictor(w2, tiny_predictor)
    other.dims.set_current_step(0, 1)
    w2.wait()
    w2.controller.load_session(path)
    got = np.asarray(w2.controller.target_layer.data)
    assert got.shape == movie.shape and np.array_equal(got, labels)
    assert _per_time(got) == {0: [1], 1: [], 2: [], 3: [1], 4: []}
    assert other.dims.current_step[0] == 1 and w2.controller.source.time_point == 1
    # the prompts not committed are back, each at its time point
    assert sorted(map(tuple, np.round(w2.controller.points_layer.data).astype(int).tolist())
                  ) == pending
    assert w2.controller.status.startswith("Loaded the session movie.json (2 commits"), (
        w2.controller.status)
    assert w2.controller.status.endswith(" Its uncommitted prompts at time points 0, 3 are "
                                         "back there: move the time slider to see them."), (
        w2.controller.status)


def test_a_movie_autosaved_is_resumed_by_a_fresh_dock(make_widget, tiny_ckpt, tmp_path):
    import tifffile

    path = tmp_path / "data" / "movie.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, blob_movie(T))
    viewer, widget = dock_on(make_widget, path, tiny_ckpt)
    assert widget.controller.source.n_times == T
    _commit_at(viewer, widget, 4, 1, 20)
    _commit_at(viewer, widget, 0, 3, 44)
    committed = np.array(widget.controller.target_layer.data)
    autosave = S.session_file_for(path)
    assert [op["time_point"] for op in S.read_session(autosave).operations] == [4, 0]
    viewer.close()  # (napari died: the autosave is all there is)

    other, w2 = dock_on(make_widget, path, tiny_ckpt)
    shown = w2.controller.source.time_point
    assert w2._resume_row.isVisibleTo(w2), w2.controller.status
    assert "(2 commits at time points 0, 4, label 1, saved" in w2._resume_label.text(), (
        w2._resume_label.text())
    sess = w2._on_resume()
    assert [op["time_point"] for op in sess.operations] == [4, 0]
    resumed = np.asarray(w2.controller.target_layer.data)
    assert np.array_equal(resumed, committed)
    assert _per_time(resumed) == {0: [1], 1: [], 2: [], 3: [], 4: [1]}
    assert w2.controller.source.time_point == shown  # (the slider was not moved)
    _commit_at(other, w2, 2, 4, 20)  # its log goes on in that file
    assert "kept as" not in w2.controller.status, w2.controller.status
    assert [op["time_point"] for op in S.read_session(autosave).operations] == [4, 0, 2]


def _session_file(path, times: int | None):
    """A session file of a (6, 64, 64) stack: a movie's of ``times`` time points (None: a
    volume's), with one label."""
    shape = (6, 64, 64) if times is None else (times, 6, 64, 64)
    labels = np.zeros(shape, np.uint32)
    labels[..., 10:20, 10:20] = 1
    image = {"name": "made", "shape": [6, 64, 64], "layer_shape": list(shape)}
    if times is not None:
        image |= {"time_points": times, "time_axis": 0}
    return S.write_session(S.Session(image=image, model={"name": "vit_b"}, labels=labels), path)


@pytest.mark.parametrize(("made", "image", "words"), [
    (5, blob_stack(),
     "Not loaded: m.json is the session of a movie of 5 time points (made), and 'here' is not "
     "a movie (one volume, no time axis). Open the movie it was made on (5 time points on "
     "napari's time slider)"),
    (None, blob_movie(T),
     "Not loaded: m.json is the session of one volume (made), and 'here' is a movie of 5 time "
     "points. Load it onto the volume it was made on"),
    (5, blob_movie(6),
     "Not loaded: m.json is the session of a movie of 5 time points (made), and 'here' has 6 "
     "time points. Open the movie it was made on (5 time points)"),
])
def test_a_session_of_another_kind_of_image_is_refused(make_widget, tmp_path, made, image,
                                                       words):
    path = _session_file(tmp_path / "m.json", made)
    viewer, widget = make_widget(image, name="here")
    with pytest.raises(UserError) as err:
        widget.controller.load_session(path)
    assert str(err.value).startswith(words), str(err.value)
    from napari.layers import Labels

    assert [ly.name for ly in viewer.layers if isinstance(ly, Labels)] == [
        "SAM current object"]  # (the preview's): no labels loaded
    assert widget.controller.target_layer is None


def test_loading_a_movie_session_keeps_the_prompts_drawn_at_another_time_point(
        make_widget, tiny_predictor, tmp_path):
    """Load session refuses a session with prompts of its own while the image holds
    uncommitted prompts: a movie's at a time point not shown count too (they were replaced
    by the session's without a word: the point at t=3 was gone)."""
    movie = blob_movie(T)
    viewer, widget = make_widget(movie, name="movie")
    use_predictor(widget, tiny_predictor)
    _commit_at(viewer, widget, 0, 3, 20)
    viewer.dims.set_current_step(0, 1)
    widget.wait()
    canvas_click(viewer, 44, 44)  # uncommitted, saved with the session
    widget.wait()
    path = widget.controller.save_session(tmp_path / "s.json")

    other, w2 = make_widget(movie, name="movie")
    use_predictor(w2, tiny_predictor)
    other.dims.set_current_step(0, 3)
    w2.wait()
    other.layers.selection.active = w2.controller.points_layer
    canvas_click(other, 20, 20)  # the user's own prompt at t=3
    w2.wait()
    other.dims.set_current_step(0, 0)  # then looks at t=0
    w2.wait()
    mine = np.asarray(w2.controller.points_layer.data).tolist()
    with pytest.raises(UserError) as err:
        w2.controller.load_session(path)
    assert str(err.value) == (
        "Not loaded: s.json has uncommitted prompts of its own, and those on the image now (at "
        "time point 3: move the time slider there) would be lost: commit them "
        "(Shift+C) or clear them (Shift+X), then load the session."), str(err.value)
    assert np.asarray(w2.controller.points_layer.data).tolist() == mine
    assert w2.controller.target_layer is None
