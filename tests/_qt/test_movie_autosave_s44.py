"""The dock's autosave of a movie hashes and writes only the time points a commit changed:
it copied, hashed and wrote the labels of every time point as one (T, Z, Y, X) TIFF after
every commit (T times a volume's cost). Here on the autosave worker (labels counted as
large), with the real threaded write; a fresh dock resumes the labels of every time point
exactly."""

from __future__ import annotations

import json

import numpy as np
from sam_qt_helpers import blob_movie, commit_at_time, dock_on

from napari_sam import session as S

T = 5


def test_a_movie_autosave_writes_only_the_time_point_committed_at(
        make_widget, tiny_ckpt, tmp_path, monkeypatch):
    import tifffile

    from napari_sam.annotate import autosave_writer

    monkeypatch.setattr(autosave_writer, "BACKGROUND_BYTES", 0)  # on the worker, a snapshot
    path = tmp_path / "data" / "movie.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, blob_movie(T))
    viewer, widget = dock_on(make_widget, path, tiny_ckpt)
    assert widget.controller.autosave_writer.background
    commit_at_time(viewer, widget, 4, 1, 20)
    autosave = S.session_file_for(path)
    first = [r["path"] for r in json.loads(autosave.read_text())["labels"]["time_points"]]
    before = {p.name: p.stat().st_mtime_ns for p in path.parent.iterdir()}
    hashed, real = [], S.labels_hash
    monkeypatch.setattr(S, "labels_hash", lambda a: hashed.append(a.shape) or real(a))

    commit_at_time(viewer, widget, 0, 3, 44)
    assert hashed == [(6, 64, 64)]  # the time point committed at, not all five
    second = [r["path"] for r in json.loads(autosave.read_text())["labels"]["time_points"]]
    assert second[1:] == first[1:] and second[0] != first[0]
    after = {p.name: p.stat().st_mtime_ns for p in path.parent.iterdir()}
    written = {n for n in after if n.endswith(".tif") and before.get(n) != after[n]}
    assert written == {second[0]}  # one volume's TIFF written, the movie's left alone
    committed = np.array(widget.controller.target_layer.data)
    viewer.close()

    _, w2 = dock_on(make_widget, path, tiny_ckpt)
    assert w2._resume_row.isVisibleTo(w2), w2.controller.status
    w2._on_resume()
    resumed = np.asarray(w2.controller.target_layer.data)
    assert resumed.shape == (T, 6, 64, 64) and resumed[0].any() and resumed[4].any()
    assert np.array_equal(resumed, committed)
