"""Output metadata: the JSON file written beside every output (``out.tif`` ->
``out.tif.json``, the output's full name plus ``.json``, so ``out.tif`` and ``out.npy`` never
share one). It records the model, version, parameters, objects, the output's size and the
input's size, mtime and a hash of sampled bytes (:func:`content_sample_hash`);
:func:`is_complete` uses it to decide whether a batch rerun can skip an output.

(Older code and docs call this file the output's "sidecar"; checkpoint metadata written beside
model weights is another file, see :mod:`napari_sam.training`.)
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_sam.io.writers import write_json_atomic

#: ``format`` of an output metadata file (the name on disk is kept for resume).
OUTPUT_METADATA_FORMAT = "napari-sam-stacks/output"
OUTPUT_METADATA_VERSION = 1


def output_metadata_path(output_path: os.PathLike | str) -> Path:
    """The output metadata file of an output: its full name plus ``.json`` (``out.tif`` ->
    ``out.tif.json``)."""
    p = Path(output_path)
    return p.with_name(p.name + ".json")


def _path_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


#: Bytes read by :func:`content_sample_hash`: the first and last 64 KiB and 32 blocks of 4 KiB
#: spread evenly in between (about 256 KiB per file, whatever its size).
_SAMPLE_EDGE = 64 << 10


_SAMPLE_BLOCK = 4 << 10


_SAMPLE_BLOCKS = 32


def content_sample_hash(path: os.PathLike | str) -> str | None:
    """A cheap content hash of a file: BLAKE2 of its size and sampled bytes.

    Reads the first and last 64 KiB and 32 evenly spaced 4 KiB blocks (at most about 256 KiB),
    so it costs the same for a 1 MB and a 100 GB file. It tells apart two files of the same
    size and mtime with other data (a stack replaced by another acquisition) unless they
    differ only between the sampled blocks. For a directory (a zarr store, whose own mtime
    does not change when its chunk files are rewritten) it is the hash of every file's
    relative path, size and mtime (a listing, no chunk read). None for unreadable paths.
    """
    import hashlib

    p = Path(path)
    try:
        if p.is_dir():
            h = hashlib.blake2b(digest_size=16)
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                st = f.stat()
                h.update(f"{f.relative_to(p).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n"
                         .encode())
            return "listing:" + h.hexdigest()
        size = p.stat().st_size
        h = hashlib.blake2b(digest_size=16)
        h.update(str(size).encode())
        with open(p, "rb") as f:
            if size <= 2 * _SAMPLE_EDGE + _SAMPLE_BLOCKS * _SAMPLE_BLOCK:
                h.update(f.read())
            else:
                h.update(f.read(_SAMPLE_EDGE))
                inner = size - 2 * _SAMPLE_EDGE - _SAMPLE_BLOCK
                for i in range(_SAMPLE_BLOCKS):
                    f.seek(_SAMPLE_EDGE + inner * i // max(1, _SAMPLE_BLOCKS - 1))
                    h.update(f.read(_SAMPLE_BLOCK))
                f.seek(size - _SAMPLE_EDGE)
                h.update(f.read(_SAMPLE_EDGE))
    except OSError:
        return None
    return h.hexdigest()


def input_fingerprint(path: os.PathLike | str) -> dict:
    """What the output metadata records of an input file or zarr folder: ``{path, size,
    mtime_ns, sample_hash}`` (:func:`content_sample_hash`); OSError when it cannot be read."""
    path = Path(path)
    st = path.stat()
    return {
        "path": str(path.resolve()),
        "size": _path_size(path) if path.is_dir() else st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sample_hash": content_sample_hash(path),
    }


def _output_record(out: Path) -> dict:
    """What the output metadata records of the output ``out``: its name and size, and for a
    file its mtime and SHA-256 (what :func:`output_edited` compares)."""
    import hashlib

    record = {"name": out.name, "size": _path_size(out)}
    if out.is_file():
        digest = hashlib.sha256()
        with open(out, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        record.update(mtime_ns=out.stat().st_mtime_ns, sha256=digest.hexdigest())
    return record


#: Seconds an output without a recorded SHA-256 (metadata of an older napari-sam) may be newer
#: than its metadata file and still count as unedited (file systems with coarse time stamps,
#: a copy of the folder that wrote the output just after its metadata).
LEGACY_MTIME_SLACK_S = 2


def output_edited(output_path: os.PathLike | str) -> bool:
    """Whether a complete output was changed since its output metadata was written: edited
    by hand (labels corrected and saved over it) or by another program.

    True when the output file's size differs from the recorded one, or its mtime differs and
    its content (SHA-256, recorded since 2026-12) too; a copy that kept the content is not
    edited. Output metadata written before the SHA-256 was recorded (by an older napari-sam)
    has only the size, which an edit of a ``.npy`` (or an uncompressed TIFF) keeps: such an
    output counts as edited when it was modified more than :data:`LEGACY_MTIME_SLACK_S`
    seconds after its metadata file was written (the metadata is written after the output),
    so a rerun after upgrading keeps it. False for a missing output, output metadata that is
    missing or not ``"complete"``, and folder outputs (zarr stores). A batch rerun keeps an
    edited output (``napari-sam auto`` and ``segment`` replace it only with ``--overwrite``).
    """
    out = Path(output_path)
    meta = read_output_metadata(out)
    if not out.is_file() or meta is None or meta.get("status") != "complete":
        return False
    rec = meta.get("output")
    if not isinstance(rec, dict):
        return False
    st = out.stat()
    if rec.get("size") != st.st_size:
        return True
    if rec.get("sha256") is None:
        written = output_metadata_path(out).stat().st_mtime_ns
        return st.st_mtime_ns > written + LEGACY_MTIME_SLACK_S * 10**9
    if rec.get("mtime_ns") == st.st_mtime_ns:
        return False
    return _output_record(out)["sha256"] != rec["sha256"]


def _object_record(o: Mapping) -> dict:
    sr = o.get("slice_range")
    score = o.get("score")
    rec = {
        "id": int(o["id"]),
        "slice_range": None if sr is None else [int(sr[0]), int(sr[1])],
        "area": None if o.get("area") is None else int(o["area"]),
        "score": None if score is None or not math.isfinite(float(score)) else float(score),
    }
    if o.get("time_point") is not None:  # an object of one time point of a movie (TZYX)
        rec["time_point"] = int(o["time_point"])
    return rec


def write_output_metadata(
    output_path: os.PathLike | str,
    *,
    model,
    version: str,
    parameters: Mapping | None,
    objects: Sequence[Mapping],
    input_path: os.PathLike | str | None,
    status: str = "complete",
    extra: Mapping | None = None,
    parameters_in_effect: Mapping | None = None,
    input_record: Mapping | None = None,
) -> Path:
    """Write the output metadata of ``output_path`` (which must already be written) atomically.

    Contents: ``format``, ``format_version``, ``status`` (``"complete"`` or e.g.
    ``"partial"``), ``created`` (UTC ISO time), ``model`` (name or dict), ``version``,
    ``parameters``, ``input`` ({path, size, mtime_ns, sample_hash} or null), ``output`` ({name,
    size}, and for a file mtime_ns and sha256: :func:`output_edited`),
    ``objects`` as ``[{id, slice_range, area, score}]`` (and ``time_point`` for an object of
    one time point of a ``TZYX`` movie), optional ``parameters_in_effect``
    (the values the run used where ``parameters``, the resume signature, records a default
    such as None or "auto") and optional ``extra``. ``input_record``: the input's
    :func:`input_fingerprint` taken before it was read (default: taken now).
    Returns the output metadata path.
    """
    out = Path(output_path)
    if not out.exists():
        raise FileNotFoundError(
            f"cannot write a sidecar for {str(out)!r}: the output does not exist yet"
        )
    record = {
        "format": OUTPUT_METADATA_FORMAT,
        "format_version": OUTPUT_METADATA_VERSION,
        "status": str(status),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "version": str(version),
        "parameters": dict(parameters or {}),
        "input": dict(input_record) if input_record is not None else (
            None if input_path is None else input_fingerprint(input_path)),
        "output": _output_record(out),
        "objects": [_object_record(o) for o in objects],
    }
    if parameters_in_effect:
        record["parameters_in_effect"] = dict(parameters_in_effect)
    if extra:
        record["extra"] = dict(extra)
    return write_json_atomic(output_metadata_path(out), record)


def read_output_metadata(output_path: os.PathLike | str) -> dict | None:
    """The output metadata of ``output_path`` as a dict, or None when missing, unreadable or
    corrupt."""
    p = output_metadata_path(output_path)
    try:
        with open(p, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def is_complete(
    output_path: os.PathLike | str, input_path: os.PathLike | str | None = None
) -> bool:
    """Whether ``output_path`` is a finished, up-to-date output that a rerun can skip.

    True only when the output exists, its output metadata is readable with ``status == "complete"``,
    the output metadata's recorded output size equals the output's current size, and (when
    ``input_path`` is given) the output metadata's input size, mtime and sampled content hash
    (:func:`content_sample_hash`) match the current input file.
    With ``input_path=None`` the input is not checked. :func:`incomplete_reason` says why not.
    """
    return not incomplete_reason(output_path, input_path)


def incomplete_reason(
    output_path: os.PathLike | str, input_path: os.PathLike | str | None = None
) -> str:
    """Why :func:`is_complete` says no, as a short phrase (``"the input changed"``, ``"its
    sidecar records no input"``, ``"the output's size differs from its sidecar's"``, ...);
    ``""`` when the output is complete. The input is checked before the output's size, so a
    changed input is named as the cause when both changed."""
    out = Path(output_path)
    if not out.exists():
        return "the output is missing"
    sc = read_output_metadata(out)
    if sc is None:
        return "its sidecar is missing or unreadable"
    if sc.get("status") != "complete":
        return "its sidecar says it is unfinished"
    if input_path is not None:
        inp = Path(input_path)
        rec = sc.get("input")
        if not isinstance(rec, dict):
            return "its sidecar records no input"
        if not inp.exists():
            return "the input is missing"
        try:
            now = input_fingerprint(inp)
        except OSError:
            return "the input changed"
        if rec.get("size") != now["size"] or rec.get("mtime_ns") != now["mtime_ns"]:
            return "the input changed"
        # same size and mtime can still be other data (a file replaced by a copy that kept
        # the time stamp): compare sampled content; metadata from before it have no hash
        if rec.get("sample_hash") is not None and rec["sample_hash"] != now["sample_hash"]:
            return "the input changed"
    try:
        if int(sc["output"]["size"]) != _path_size(out):
            return "the output's size differs from its sidecar's"
    except (KeyError, TypeError, ValueError):
        return "its sidecar records no output size"
    except OSError:
        return "the output's size could not be read"
    return ""


#: Voxels per slab :func:`label_objects_summary` counts at once (its int64 copy: 128 MiB).
SUMMARY_SLAB_VOXELS = 1 << 24


def _counts_and_boxes(a: np.ndarray, max_id: int) -> tuple[np.ndarray, list]:
    """Voxel counts (``max_id + 1``,) and ``find_objects`` boxes of labels ``a`` (ids up to
    ``max_id``), computed in slabs along the first axis: the int64 copy ``bincount`` needs is
    one slab's (a 200 x 1024 x 1024 volume's whole copy was 1.6 GB, the peak of `segment`)."""
    from scipy import ndimage

    step = max(1, SUMMARY_SLAB_VOXELS // max(1, a[0].size)) if a.ndim > 1 else a.shape[0]
    counts = np.zeros(max_id + 1, np.int64)
    boxes: list = [None] * max_id
    for z0 in range(0, a.shape[0], step):
        slab = a[z0:z0 + step]
        if slab.dtype.itemsize > 4 and slab.dtype.kind == "u":
            slab = slab.astype(np.int64)
        counts += np.bincount(slab.ravel().astype(np.intp, copy=False), minlength=max_id + 1)
        for i, box in enumerate(ndimage.find_objects(slab, max_label=max_id)):
            if box is None:
                continue
            box = (slice(box[0].start + z0, box[0].stop + z0), *box[1:])
            old = boxes[i]
            boxes[i] = box if old is None else tuple(
                slice(min(o.start, b.start), max(o.stop, b.stop)) for o, b in zip(old, box))
    return counts, boxes


def label_objects_summary(labels, scores: Mapping | Sequence | None = None) -> list[dict]:
    """Summarise each object of a label image / volume.

    Returns ``[{id, slice_range, area, bbox, score}]`` sorted by id, for every id > 0 present:
    ``area`` the pixel (voxel) count; ``bbox`` ``[start_0, ..., start_n, stop_0, ..., stop_n]``
    (stops exclusive, like scikit-image); ``slice_range`` ``[first, last]`` (inclusive) index
    along the first axis for 3D labels, None for 2D; ``score`` from ``scores`` (a mapping
    id -> score, or a sequence indexed by id) or None.
    Vectorised with ``np.bincount`` and ``scipy.ndimage.find_objects`` (ids are compacted
    first when they are sparse, so huge ids cost no memory).
    """
    from scipy import ndimage

    a = np.asarray(labels)
    if a.size == 0:
        return []
    if not np.issubdtype(a.dtype, np.integer) and a.dtype != bool:
        raise ValueError(f"labels must be integers, got dtype {a.dtype}")
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.min() < 0:
        raise ValueError("labels must be >= 0")
    max_id = int(a.max())
    if max_id == 0:
        return []
    if max_id <= 4 * a.size + 1024:
        counts, all_slices = _counts_and_boxes(a, max_id)
        ids = np.flatnonzero(counts[1:]) + 1
        slices = [all_slices[i - 1] for i in ids]
        areas = counts[ids]
    else:  # sparse huge ids: compact them first
        uniq, inv = np.unique(a, return_inverse=True)
        inv = inv.reshape(a.shape).astype(np.int64, copy=False)
        counts = np.bincount(inv.ravel(), minlength=len(uniq))
        if uniq[0] == 0:
            ids, areas = uniq[1:], counts[1:]
        else:
            inv = inv + 1
            ids, areas = uniq, counts
        slices = ndimage.find_objects(inv)
    out = []
    for oid, area, sl in zip(ids.tolist(), areas.tolist(), slices):
        starts = [s.start for s in sl]
        stops = [s.stop for s in sl]
        score = None
        if scores is not None:
            try:
                score = scores[oid]
            except (KeyError, IndexError, TypeError):
                score = None
            score = None if score is None else float(score)
        out.append(
            {
                "id": int(oid),
                "slice_range": [starts[0], stops[0] - 1] if a.ndim == 3 else None,
                "area": int(area),
                "bbox": starts + stops,
                "score": score,
            }
        )
    return out
