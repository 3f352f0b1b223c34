"""Autosaves of images without a file: a script's ``viewer.add_image(array)``, a layer
another plugin made, a pasted layer.

Such an image's session was never autosaved (there is no file to save it beside): napari
killed or crashing lost every commit. It is now autosaved under the cache folder, in a folder
of its own named by the image's pixels (:func:`memory_image_key`, :func:`memory_session_file`):
the same pixels added again, also in a new napari, find their session and are offered to
resume it; other pixels find none. Within that folder the rules of an image file's session
file apply (another image of the same pixels under another name and shape has a file of its own).

Those folders are the only files napari-sam writes there, and nobody else removes them:
:func:`prune_memory_sessions` keeps the newest :data:`KEPT_IMAGES` and removes those unused
for :data:`KEPT_DAYS` days, never one a live session autosaves in (its lock held) or, in
this process, has autosaved in or resumed from (its session still open, also after another
image was picked in its dock), nor, on a file system that cannot lock, one whose lock file
names a napari that may still run, nor the one named to keep (the image open), and removes
only the session files in them (names with ``.sam-session``), then the folder when it is
empty.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import time
import zlib
from pathlib import Path

import numpy as np

__all__ = ["KEPT_DAYS", "KEPT_IMAGES", "MEMORY_FOLDER", "in_memory", "memory_autosave_words",
           "memory_image_key", "memory_session_file", "memory_sessions_folder",
           "prune_memory_sessions", "refuse_memory_folder"]

#: the folder, under the cache folder's ``sessions``, of the autosaves of images without a file
MEMORY_FOLDER = "in-memory"
#: how many images' autosaves (one folder each) are kept at most; older ones are removed
KEPT_IMAGES = 20
#: an autosave not written for this many days is removed
KEPT_DAYS = 30
#: an autosave written this recently is kept beyond :data:`KEPT_IMAGES` (another napari may
#: have its image open without a commit yet)
_GRACE_S = 24 * 3600.0
_OURS = re.compile(r"^[0-9a-f]{16}$")  # a folder made by memory_session_file


def memory_sessions_folder() -> Path:
    """``<cache>/sessions/in-memory``: the cache folder is the one models are cached in
    (``NAPARI_SAM_CACHE_DIR`` or the platform cache,
    :func:`napari_sam.models.download.cache_dir`)."""
    from napari_sam.models.download import cache_dir

    return cache_dir() / "sessions" / MEMORY_FOLDER


def memory_image_key(image_hash: str, stack, data) -> str:
    """What names the autosave folder of an image without a file: ``image_hash``
    (:func:`napari_sam.session.image_hash` of ``stack``, which reads up to 16 of its slices)
    when the layer's ``data`` is lazy (dask, zarr: not read whole); when ``data`` is a numpy
    array in memory, a hash of ``image_hash`` and the CRC-32 of every slice of ``stack`` (the
    (Z, Y, X[, C]) stack SAM sees; about 4 GB/s): two arrays that differ only on slices the
    image hash leaves out were one image, each offered the other's session. A memory-mapped
    array (``np.load(mmap_mode=...)``, ``tifffile.memmap``, a view of one) is on disk: lazy."""
    if not in_memory(data):
        return str(image_hash)
    h = hashlib.blake2b(str(image_hash).encode(), digest_size=16)
    for z in range(int(stack.shape[0])):
        h.update(zlib.crc32(np.ascontiguousarray(stack[z])).to_bytes(4, "little"))
    return h.hexdigest()


def in_memory(data) -> bool:
    """Whether ``data`` is a numpy array in memory (not mapped from a file, nor a view of
    one)."""
    if not isinstance(data, np.ndarray):
        return False
    while isinstance(data, np.ndarray):
        if isinstance(data, np.memmap):
            return False
        data = data.base
    return not isinstance(data, mmap.mmap)


def memory_session_file(image_key: str) -> Path:
    """Where the session of an image without a file is autosaved:
    ``<cache>/sessions/in-memory/<first 16 hex digits of image_key>/image.sam-session.json``
    (``image_key``: :func:`memory_image_key` of the stack SAM sees)."""
    return memory_sessions_folder() / str(image_key)[:16] / "image.sam-session.json"


def memory_autosave_words(image_name: str, written: Path) -> str:
    """What the status line says at the first autosave of the image ``image_name`` without
    a file: where its session is autosaved (``written``), and that adding the same image
    again finds it."""
    return (f"'{image_name}' has no file: the session is autosaved in {written} (adding the "
            "same image again, also in a new napari, offers to resume it).")


def refuse_memory_folder(path: Path) -> None:
    """:class:`~napari_sam.annotate.errors.UserError` when ``path``, where the user saves a
    session (*Save session...*), is in :func:`memory_sessions_folder`: the files there are
    removed after :data:`KEPT_DAYS` days (the dock's dialog starts at a resumed autosave of
    an image without a file, there)."""
    from .errors import UserError

    folder = memory_sessions_folder()
    if Path(path).resolve().is_relative_to(folder.resolve()):
        raise UserError(f"Could not save the session to {path}: {folder} holds the autosaves "
                        f"of images without a file, removed after {KEPT_DAYS} days unwritten. "
                        "Pick another folder to keep it.")


def prune_memory_sessions(keep: Path | None = None, now: float | None = None) -> list[Path]:
    """Remove the autosaves of images without a file beyond the newest :data:`KEPT_IMAGES`
    (unless written within a day) and those not written for :data:`KEPT_DAYS` days; never
    the folder ``keep`` (the open image's), nor one holding a session file a live session
    autosaves in, or a live session of this process has autosaved in or resumed from
    (:func:`~napari_sam.annotate.session_claims.used_here`), nor, on a file system that
    cannot lock, one whose lock file names a napari that may still run (another host's, or
    one of this host running: :func:`~napari_sam.annotate.ended_sessions.maybe_open_elsewhere`;
    before, it was pruned as anyone's). Only session files
    (``.sam-session`` in the name) are removed, then their folder when empty; a file that
    cannot be removed is left. Returns the folders removed from."""
    from .ended_sessions import maybe_open_elsewhere
    from .session_claims import claimed, used_here

    now = time.time() if now is None else now
    try:
        folders = [(_last_written(f), f) for f in memory_sessions_folder().iterdir()
                   if _OURS.match(f.name) and f.is_dir()]
    except OSError:  # none yet, or unreadable: nothing to prune
        return []
    folders.sort(reverse=True)
    keep = None if keep is None else Path(keep).absolute()
    removed = []
    for rank, (written, folder) in enumerate(folders):
        old = now - written > KEPT_DAYS * 86400.0
        crowded = rank >= KEPT_IMAGES and now - written > _GRACE_S
        if not (old or crowded) or folder.absolute() == keep:
            continue
        files = [p for p in _entries(folder) if ".sam-session" in p.name and p.is_file()]
        if any(claimed(p) or used_here(p) or maybe_open_elsewhere(p) for p in files
               if p.name.endswith(".sam-session.json")):
            continue
        for p in files:
            try:
                p.unlink()
            except OSError:
                pass
        try:
            folder.rmdir()
        except OSError:  # something else is there (not ours): left
            pass
        removed.append(folder)
    return removed


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _last_written(folder: Path) -> float:
    """When the newest file in ``folder`` was written (its own time when empty)."""
    times = []
    for p in _entries(folder):
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            pass
    try:
        return max(times) if times else folder.stat().st_mtime
    except OSError:
        return 0.0
