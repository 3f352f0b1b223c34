"""A movie's session writes one labels TIFF per time point: each autosave copied, hashed
and wrote the labels of EVERY time point as one (T, Z, Y, X) TIFF after every commit (a
20-time-point movie of 1 GB volumes: 20 GB per commit). Now a save writes only the time
points whose labels changed (the others keep their content-addressed TIFF), the labels of
every time point load back exactly, a movie session of one (T, Z, Y, X) TIFF (version 1)
still loads, and the per-time-point TIFFs a session file names are never removed."""

from __future__ import annotations

import json
import shutil

import numpy as np

from napari_sam import io as nio
from napari_sam import session as S
from session_claim_helpers import another_process_claims

T, Z = 4, 3


def _movie_session(labels: np.ndarray) -> S.Session:
    image = {"path": None, "name": "m", "shape": [Z, 16, 16], "layer_shape": [T, Z, 16, 16],
             "time_points": T, "time_axis": 0}
    return S.Session(image=image, model={"name": "vit_b"}, labels=labels.copy())


def _labels() -> np.ndarray:
    labels = np.zeros((T, Z, 16, 16), np.uint32)
    for t in range(T):
        labels[t, 1, 2 + t:6 + t, 3:7] = t + 1
    return labels


def _files(folder) -> dict[str, tuple[int, int]]:
    """{name: (inode, mtime_ns)} of the files in ``folder``."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def _named(path) -> list[str]:
    return [r["path"] for r in json.loads(path.read_text())["labels"]["time_points"]]


def test_a_commit_at_one_time_point_rewrites_only_its_tiff(tmp_path):
    labels = _labels()
    session = _movie_session(labels)
    path = S.write_session(session, tmp_path / "m.sam-session.json")
    first = _named(path)
    assert len(set(first)) == T and json.loads(path.read_text())["version"] == 2
    before = _files(tmp_path)
    labels[2, 0, 0:3, 0:3] = 7  # a commit at time point 2
    session.labels = labels.copy()
    S.write_session(session, path)
    after = _files(tmp_path)
    second = _named(path)
    assert [a == b for a, b in zip(first, second)] == [True, True, False, True]
    assert set(after) - set(before) == {second[2]}  # its TIFF only (and the JSON, replaced)
    assert set(before) - set(after) == {first[2]}  # the TIFF no file names is removed
    for name in (first[0], first[1], first[3]):
        assert after[name] == before[name]  # not written again
    back = S.read_session(path).labels
    assert back.dtype == np.uint32 and np.array_equal(back, labels)


def test_an_old_movie_session_of_one_tiff_still_loads(tmp_path):
    """Version 1, written earlier by the same dock: labels one (T, Z, Y, X) TIFF."""
    labels = _labels()
    record = S.to_dict(_movie_session(labels))
    digest = S.labels_hash(labels)
    tiff = f"m.sam-session.labels-{digest[:12]}.tif"
    nio.write_labels(tmp_path / tiff, labels, axes="TZYX")
    record["labels"] = {"path": tiff, "hash": digest, "dtype": "uint32",
                        "shape": list(labels.shape)}
    assert record["version"] == 1
    path = tmp_path / "m.sam-session.json"
    path.write_text(json.dumps(record))
    assert np.array_equal(S.read_session(path).labels, labels)
    kept = S.keep_aside(path)  # (kept aside with its TIFF, as before)
    assert np.array_equal(S.read_session(kept).labels, labels)
    S.write_session(S.read_session(path), path)  # saved again: one TIFF per time point
    assert len(_named(path)) == T and not (tmp_path / tiff).exists()
    assert np.array_equal(S.read_session(path).labels, labels)


def test_a_missing_time_point_tiff_is_named(tmp_path):
    path = S.write_session(_movie_session(_labels()), tmp_path / "m.json")
    (tmp_path / _named(path)[3]).unlink()
    try:
        S.read_session(path)
    except S.SessionError as err:
        assert "its labels (time point 3) TIFF" in str(err) and "is missing" in str(err)
    else:
        raise AssertionError("a missing time point TIFF was not said")


def test_the_time_point_tiffs_a_session_names_are_kept(tmp_path):
    """A copy the user made keeps the TIFFs it names when the original is saved again; the
    sweep of a killed write's leftovers and a kept-aside copy keep every time point's."""
    from napari_sam.session_leftovers import leftovers
    from napari_sam.session_temporaries import remove_dead_session_temporaries

    labels = _labels()
    session = _movie_session(labels)
    path = S.write_session(session, tmp_path / "m.json")
    shutil.copy(path, tmp_path / "m-v1.json")  # the user keeps this version
    old = _named(path)
    labels[1] = 0
    session.labels = labels.copy()
    S.write_session(session, path)
    assert all((tmp_path / n).is_file() for n in old)  # m-v1.json names them
    assert leftovers(path, older_than=0) == []
    assert remove_dead_session_temporaries(tmp_path) == []  # (only hidden temporaries go)
    assert np.array_equal(S.read_session(tmp_path / "m-v1.json").labels, _labels())
    kept = S.keep_aside(path)
    assert len(set(_named(kept)) & set(_named(path))) == 0  # its own copies
    assert np.array_equal(S.read_session(kept).labels, labels)


def test_pruning_keeps_the_time_point_tiffs_of_a_live_movie_session():
    import os
    import time

    from napari_sam.annotate.memory_sessions import memory_sessions_folder, prune_memory_sessions

    folder = memory_sessions_folder() / ("d" * 16)
    folder.mkdir(parents=True)
    path = S.write_session(_movie_session(_labels()), folder / "image.sam-session.json")
    with another_process_claims(path):
        then = time.time() - 40 * 86400.0
        for p in folder.iterdir():
            os.utime(p, (then, then))
        assert prune_memory_sessions() == []
    assert all((folder / n).is_file() for n in _named(path))
    assert np.array_equal(S.read_session(path).labels, _labels())


def test_a_movie_base_is_written_per_time_point_with_the_hashes_given(tmp_path):
    """The dock hashes a log's base once (a list for a movie) and gives it to every save."""
    labels, base = _labels(), _labels()[::-1].copy()
    session = _movie_session(labels)
    session.base = base
    path = S.write_session(session, tmp_path / "m.json", base_hash=S.session_labels_hash(base))
    record = json.loads(path.read_text())
    assert [r["hash"] for r in record["base"]["time_points"]] == S.session_labels_hash(base)
    back = S.read_session(path)
    assert np.array_equal(back.base, base) and np.array_equal(back.labels, labels)


def test_a_movie_sessions_time_point_tiffs_are_not_taken_for_images(tmp_path):
    """A batch run over the folder leaves a session's label TIFFs out: a movie's too."""
    from napari_sam.batch.inputs import is_session_labels

    path = S.write_session(_movie_session(_labels()), tmp_path / "movie.tif.sam-session.json")
    assert [is_session_labels(tmp_path / n) for n in sorted(set(_named(path)))] == [True] * T
