"""The label TIFFs of a session file (:mod:`napari_sam.session`): written beside it, named by
their content (``<name>.labels-<hash>.tif``, ``<name>.base-<hash>.tif``), read back and
checked, copied beside a kept-aside copy.

A volume's labels (and base) are one (Z, Y, X) TIFF. A movie's (T, Z, Y, X) are one TIFF per
time point (since format version 2: the session file's ``labels`` names them in order under
``time_points``): a save writes only the time points whose TIFF is not there already, so the
autosave after a commit at one time point writes one volume, not the whole movie; time
points of one content (e.g. those still empty) share a TIFF. A movie session of one
(T, Z, Y, X) TIFF (version 1) is read as before.

The hashes are :func:`napari_sam.session.labels_hash`, given by the caller (``hash_of``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_sam.session_checks import session_error
from napari_sam.session_leftovers import tiff_refs
from napari_sam.session_temporaries import session_tmp_name

__all__ = ["keep_tiff", "own_tiffs", "read_labels_file", "write_labels_file",
           "write_labels_files"]

#: the content hash of labels (:func:`napari_sam.session.labels_hash`)
HashOf = Callable[[np.ndarray], str]


def write_labels_file(json_path: Path, what: str, labels: np.ndarray, hash_of: HashOf,
                      digest: str | None = None, made: list | None = None) -> dict:
    """Write the label TIFF of ``labels`` beside ``json_path`` unless one of its content is
    there already; returns its record. ``hash_of``: the content hash (when ``digest`` is
    not given); ``made``: a list the file is added to when written."""
    from napari_sam import io as nio

    digest = digest or hash_of(labels)
    stem = json_path.name[: -len(".json")] if json_path.name.endswith(".json") else json_path.name
    path = json_path.with_name(f"{stem}.{what}-{digest[:12]}.tif")
    if not path.exists():
        nio.write_labels(path, labels, axes="TZYX" if labels.ndim == 4 else "ZYX",
                         overwrite=True, compression=("zlib", 1),
                         tmp=session_tmp_name(path))  # (its writer named: a kill's is found)
        if made is not None:
            made.append(path)
    return {"path": path.name, "hash": digest, "dtype": str(labels.dtype),
            "shape": list(labels.shape)}


def write_labels_files(json_path: Path, what: str, labels: np.ndarray, hash_of: HashOf,
                       digest: str | Sequence[str] | None, made: list) -> dict:
    """:func:`write_labels_file` of ``labels``; a movie's (T, Z, Y, X): one TIFF per time
    point (``digest``: their hashes, :func:`napari_sam.session.session_labels_hash`), each
    written only when no TIFF of its content is there already (the time points a commit
    did not change keep theirs: an autosave writes the one time point a commit changed,
    not all T)."""
    if labels.ndim != 4:
        return write_labels_file(json_path, what, labels, hash_of,
                                 digest if isinstance(digest, str) else None, made)
    digests = digest if isinstance(digest, Sequence) and not isinstance(digest, str) and len(
        digest) == labels.shape[0] else [None] * labels.shape[0]
    parts = [write_labels_file(json_path, what, labels[t], hash_of, digests[t], made)
             for t in range(labels.shape[0])]
    return {"dtype": str(labels.dtype), "shape": list(labels.shape),
            "time_points": [{"path": p["path"], "hash": p["hash"]} for p in parts]}


def own_tiffs(json_path: Path) -> set[str]:
    """The label TIFFs the session file at ``json_path`` names, named as
    :func:`napari_sam.session.write_session` names them (none if it is missing or
    unreadable): the only files a save may remove."""
    stem = json_path.name[: -len(".json")] if json_path.name.endswith(".json") else json_path.name
    own = re.compile(re.escape(stem) + r"\.(labels|base)-[0-9a-f]{12}\.tif")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8-sig"))
        refs = [data.get(what) for what in ("labels", "base")]
    except (OSError, ValueError, AttributeError):
        return set()
    return {r["path"] for ref in refs for r in tiff_refs(ref) if own.fullmatch(r["path"])}


def keep_tiff(path: Path, kept: Path, what: str, ref: Mapping) -> Mapping:
    """A copy beside ``kept`` of the TIFF ``ref`` names beside ``path``
    (:func:`napari_sam.session.keep_aside`); returns ``ref`` naming the copy (as it is
    when the TIFF is not there)."""
    import shutil

    old = path.with_name(ref["path"])
    new = kept.with_name(f"{kept.name[: -len('.json')]}.{what}-"
                         f"{str(ref.get('hash', 'x' * 12))[:12]}.tif")
    if not old.is_file():
        return ref
    if not new.is_file():  # (time points of one content share one TIFF)
        shutil.copy2(old, new.with_name(new.name + ".part"))
        os.replace(new.with_name(new.name + ".part"), new)
    return dict(ref, path=new.name)


def read_labels_file(json_path: Path, ref, shape, what: str,
                     hash_of: HashOf) -> np.ndarray | None:
    """The ``labels`` or ``base`` of the session file at ``json_path``: one TIFF of
    ``shape``, or a movie's TIFF per time point (``time_points``, version 2) stacked."""
    if ref is None:
        return None
    name = json_path.name
    if isinstance(ref, Mapping) and "path" not in ref and isinstance(ref.get("time_points"), list):
        parts = ref["time_points"]
        if len(shape) != 4 or len(parts) != shape[0]:
            raise session_error(name, f"its '{what}' names {len(parts)} time point TIFFs, but "
                                      f"the movie has {shape[0] if len(shape) == 4 else 1}")
        dtype = ref.get("dtype", "uint32")
        out = None
        for t, part in enumerate(parts):
            arr = read_labels_file(json_path, dict(part, dtype=dtype) if isinstance(
                part, Mapping) else part, shape[1:], f"{what} (time point {t})", hash_of)
            out = np.empty(shape, arr.dtype) if out is None else out
            out[t] = arr
        return out
    if not isinstance(ref, Mapping) or not isinstance(ref.get("path"), str):
        raise session_error(name, f"'{what}' must name its TIFF ('path')")
    path = json_path.parent / ref["path"]
    if not path.is_file():
        raise session_error(name, f"its {what} TIFF {path} is missing; keep it beside the "
                                  "session file")
    import tifffile

    try:
        arr = np.asarray(tifffile.imread(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable TIFF gets the same message
        raise session_error(name, f"its {what} TIFF {path} cannot be read ({exc})") from None
    if arr.size != int(np.prod(shape)):
        raise session_error(name, f"its {what} TIFF {path} has shape {arr.shape}, the image "
                                  f"{shape}")
    arr = arr.reshape(shape).astype(np.dtype(ref.get("dtype", "uint32")))
    if ref.get("hash") and hash_of(arr) != ref["hash"]:
        raise session_error(name, f"its {what} TIFF {path} was changed since the session was saved "
                                  "(content hash differs), so the session's commits no longer "
                                  "describe it. To use the edited labels, open the TIFF as a "
                                  "labels layer in napari and go on annotating into it (a new "
                                  "session starts); to use the session, put back the TIFF it "
                                  f"saved (\"hash\": \"{ref['hash']}\" under '{what}'), e.g. "
                                  "from a backup")
    return arr

