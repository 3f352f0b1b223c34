"""Writing files atomically: label images and volumes (TIFF, OME-TIFF, ``.npy``, zarr), label
volumes streamed page by page into a TIFF, JSON and pictures.

Every write goes to a hidden temporary name beside the destination (:func:`tmp_name`), is
flushed to disk (:func:`fsync_path`) and renamed into place (``os.replace``), so a reader never
sees a partial file and a failed write leaves an existing file untouched.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam.io.axes import AXES_LETTERS, SPATIAL, validate_axes
from napari_sam.io.dead_temporaries import hold_writer_lock, writer_lock
from napari_sam.io.readers import TIFF_SUFFIXES
from napari_sam.io.time_interval import (
    imagej_time_entries,
    interval,
    ome_time_entries,
    zarr_time_entries,
)
from napari_sam.io.write_errors import WriteRecorder, naming_output

BIGTIFF_LIMIT = 2**32 - 2**26  # leave room for tags and offsets


def tmp_name(path: Path) -> Path:
    """A hidden temporary name beside ``path`` (``.<name>.<random>.tmp``) to write to before
    renaming over ``path``."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def save_picture(image, path, format: str = "PNG") -> None:
    """Save a Pillow image atomically: to a temporary name beside ``path``, then renamed, so a
    reader never sees half a file and a failure leaves nothing behind."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        image.save(tmp, format=format)
        os.replace(tmp, path)
    except BaseException as exc:
        remove_path(tmp)
        naming_output(exc, path, tmp)  # (the file the user asked for)
        raise


def fsync_path(path: Path) -> None:
    """Flush ``path``'s data to disk (best effort: errors are ignored)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_path(path: Path) -> None:
    """Delete a file or a directory tree; nothing when it is missing (even on a read-only
    file system, where unlinking a missing file fails with ``EROFS`` and would hide the error
    of the write being cleaned up after)."""
    if not os.path.lexists(path):
        return
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _check_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"Output {str(path)!r} already exists; pass overwrite=True "
            "(--overwrite on the command line) to replace it, or choose another output path."
        )


def _labels_dtype(labels: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    """Validate label values and choose uint16 or uint32."""
    a = labels
    if a.dtype == bool:
        return a, np.dtype(np.uint16)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"labels must be integers, got dtype {a.dtype}")
    if a.size == 0:
        return a, np.dtype(np.uint16)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or not np.all(a == np.floor(a)):
            raise ValueError(
                "labels must be whole numbers (object ids); got non-integer float values "
                f"(dtype {a.dtype}). Round or relabel them first."
            )
    lo, hi = a.min(), a.max()
    if lo < 0:
        raise ValueError(f"labels must be >= 0 (0 is background); found negative id {lo}")
    if hi <= np.iinfo(np.uint16).max:
        return a, np.dtype(np.uint16)
    if hi <= np.iinfo(np.uint32).max:
        return a, np.dtype(np.uint32)
    raise ValueError(
        f"label id {hi} does not fit in uint32 (max {np.iinfo(np.uint32).max}); relabel sequentially"
    )


def write_kind(path: Path) -> str:
    """The format a label output's name chooses: ``"ome-tiff"``, ``"tiff"``, ``"npy"`` or
    ``"zarr"`` (``ValueError`` for other suffixes)."""
    name = path.name.lower()
    if name.endswith((".ome.tif", ".ome.tiff")):
        return "ome-tiff"
    if path.suffix.lower() in TIFF_SUFFIXES:
        return "tiff"
    if path.suffix.lower() == ".npy":
        return "npy"
    if path.suffix.lower() == ".zarr":
        return "zarr"
    raise ValueError(
        f"Cannot write labels to {str(path)!r}: unsupported suffix {path.suffix!r}. "
        "Use .tif, .tiff, .ome.tif, .npy or .zarr."
    )


def write_labels(
    path: os.PathLike | str,
    labels,
    *,
    axes: str,
    pixel_size: Sequence[float] | None = None,
    unit: str = "um",
    metadata: Mapping | None = None,
    overwrite: bool = False,
    compression: str | tuple[str, int] | None = "zlib",
    time_interval: Mapping | None = None,
    tmp: os.PathLike | str | None = None,
) -> Path:
    """Write a label image or volume atomically and return the path written.

    Parameters
    ----------
    path : path-like
        Output file; the suffix chooses the format: ``.tif``/``.tiff`` (ImageJ hyperstack for
        uint16, OME-TIFF for uint32), ``.ome.tif`` (always OME-TIFF), ``.npy`` or ``.zarr``.
    labels : array-like of non-negative whole numbers
        0 is background. Stored as uint16 when the largest id fits, else uint32; ids are
        never truncated. Negative or non-integer values raise ``ValueError``.
    axes : str
        Letters from ``TZCYX`` (e.g. ``"YX"``, ``"ZYX"``, ``"TYX"``), validated against
        ``labels.shape``; TIFF outputs need ImageJ order (``TZCYX`` subsequence).
    pixel_size : sequence of float, optional
        One per spatial axis present, in ``Z, Y, X`` order (as ``ImageData.pixel_size``).
        Written as ImageJ ``spacing`` + X/YResolution, OME ``PhysicalSize*``, or zarr attrs.
    unit : str
        Unit of ``pixel_size`` (``"um"`` by default).
    metadata : mapping, optional
        JSON-serialisable extras, stored in the ImageJ ``Info`` property / OME image
        ``Description`` / zarr attrs as ``{"napari_sam": metadata}`` and returned by
        ``read_image`` as ``ImageData.metadata["user"]``. Not stored in ``.npy`` (use the
        output metadata).
    overwrite : bool
        Replace an existing output; otherwise ``FileExistsError``.
    compression : str, (str, int) or None
        TIFF compression (``"zlib"`` by default; ``None`` for none; ``("zlib", 1)``: zlib at
        level 1, about twice as fast as the default level 6 for 7% more bytes, what session
        autosaves use). zarr outputs use zarr's default compressor unless ``compression`` is
        None.
    time_interval : dict, optional
        The time between frames of a movie (``axes`` with ``T``), ``{"value": float, "unit":
        str}`` as :func:`napari_sam.io.read_image` gives it in ``metadata["time_interval"]``:
        written as ImageJ ``finterval``/``tunit``, OME ``TimeIncrement``/``TimeIncrementUnit``
        or zarr attrs (:mod:`napari_sam.io.time_interval`). Ignored without a ``T`` axis.
    tmp : path-like, optional
        The temporary name of a file output (default :func:`tmp_name`); a writer whose
        leftovers are found by their name gives its own (a session's label TIFF:
        :func:`napari_sam.session_temporaries.session_tmp_name`).

    The data goes to a hidden temporary name next to ``path`` which is then renamed over it
    (``os.replace``, atomic on one filesystem); on any error the temporary is removed and an
    existing ``path`` is untouched. A zarr output is a directory: it is written to a temporary
    directory, the old one is moved aside, the new one renamed in, then the old one deleted.
    """
    path = Path(path)
    kind = write_kind(path)
    arr = np.asarray(labels)
    ax = validate_axes(axes, arr.shape)
    if "C" in ax:
        raise ValueError(f"labels cannot have a channel axis (axes {ax!r}, shape {arr.shape})")
    arr, dtype = _labels_dtype(arr)
    present = [a for a in SPATIAL if a in ax]
    sizes: dict[str, float] = {}
    if pixel_size is not None:
        ps = [float(v) for v in pixel_size]
        if len(ps) != len(present) or not all(v > 0 and math.isfinite(v) for v in ps):
            raise ValueError(
                f"pixel_size {tuple(pixel_size)} must give one positive size per spatial axis "
                f"{''.join(present)!r} (axes {ax!r})"
            )
        sizes = dict(zip(present, ps))
    user = dict(metadata) if metadata else None
    if user is not None:
        json.dumps(user, default=json_default)  # fail early, before touching the disk
    time = _checked_time(time_interval, ax)
    _check_overwrite(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = arr.astype(dtype, copy=False)

    if kind == "zarr":
        _write_zarr_atomic(path, out, ax, sizes, unit, user, compression, overwrite, time)
        return path

    tmp = tmp_name(path) if tmp is None else Path(tmp)
    try:
        if kind == "npy":
            with open(tmp, "wb") as f:
                hold_writer_lock(f.fileno())
                np.save(f, out, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        else:  # (under the writer's flock: a sweep of dead temporaries never removes it)
            with writer_lock(tmp):
                _write_tiff(tmp, out, ax, sizes, unit, user, compression,
                            ome=kind == "ome-tiff", time=time)
                fsync_path(tmp)
        _check_overwrite(path, overwrite)
        os.replace(tmp, path)
    except BaseException as exc:
        remove_path(tmp)
        naming_output(exc, path, tmp)  # (the file the user asked for)
        raise
    return path


def _checked_time(time_interval: Mapping | None, ax: str) -> dict | None:
    """``time_interval`` checked (a positive finite value), or None without a ``T`` axis."""
    if time_interval is None or "T" not in ax:
        return None
    time = interval(time_interval.get("value"), time_interval.get("unit"))
    if time is None:
        raise ValueError(f"time_interval {dict(time_interval)!r} must give a positive "
                         "'value' (and a 'unit', seconds by default)")
    return time


def _write_tiff(tmp, out, ax, sizes, unit, user, compression, *, ome: bool,
                time: Mapping | None = None) -> None:
    import tifffile

    if not _is_imagej_order(ax):
        raise ValueError(
            f"TIFF labels need axes in ImageJ order (a subsequence of TZCYX), got {ax!r}; "
            "transpose the labels first"
        )
    kwargs = _tiff_options(ax, sizes, unit, user, compression, nbytes=out.nbytes,
                           ome=out.dtype == np.uint32 or ome, time=time)
    tifffile.imwrite(tmp, out, photometric="minisblack", **kwargs)


def _ome_unit(unit: str) -> str:
    """The OME ``UnitsLength`` symbol of a length unit name or symbol ("um" -> "µm",
    "angstrom" -> "Å"); other names as given ("nm", "mm", "pixel")."""
    u = str(unit)
    if u.lower() in ("um", "µm", "μm", "micron", "micrometer", "micrometre"):
        return "µm"
    if u.lower() in ("angstrom", "å"):
        return "Å"
    return u


def _tiff_options(ax: str, sizes: Mapping[str, float], unit: str, user: Mapping | None,
                  compression, *, nbytes: int, ome: bool,
                  time: Mapping | None = None) -> dict[str, Any]:
    """``tifffile.imwrite`` keywords for a label TIFF: OME-TIFF (``PhysicalSize*``, user JSON
    in the image ``Description``) or an ImageJ hyperstack (``spacing``, X/YResolution, user
    JSON in the ``Info`` property); BigTIFF above :data:`BIGTIFF_LIMIT` bytes; a movie's
    frame interval (``time``) in either."""
    kwargs: dict[str, Any] = {"compression": compression, "bigtiff": nbytes > BIGTIFF_LIMIT}
    if isinstance(compression, tuple):  # (name, level)
        kwargs.update(compression=compression[0], compressionargs={"level": compression[1]})
    md: dict[str, Any] = {"axes": ax}
    if ome:
        for letter, v in sizes.items():
            md[f"PhysicalSize{letter}"] = v
            md[f"PhysicalSize{letter}Unit"] = _ome_unit(unit)
        if user is not None:
            md["Description"] = json.dumps({"napari_sam": user}, default=json_default)
        if time is not None:
            md.update(ome_time_entries(time))
        kwargs.update(ome=True, metadata=md)
        return kwargs
    if sizes:
        md["unit"] = "micron" if unit in ("um", "µm", "micron") else unit
        if "Z" in sizes:
            md["spacing"] = sizes["Z"]
        kwargs["resolution"] = (1.0 / sizes.get("X", 1.0), 1.0 / sizes.get("Y", 1.0))
    if user is not None:
        md["Info"] = json.dumps({"napari_sam": user}, default=json_default)
    if time is not None:
        md.update(imagej_time_entries(time))
    kwargs.update(imagej=True, metadata=md)
    return kwargs


def write_labels_stream(
    path: os.PathLike | str,
    slices: Iterable[np.ndarray],
    *,
    shape: Sequence[int],
    max_id: int,
    axes: str,
    pixel_size: Sequence[float] | None = None,
    unit: str = "um",
    metadata: Mapping | None = None,
    compression: str | None = "zlib",
    time_interval: Mapping | None = None,
) -> Path:
    """Write a label volume slice by slice to a TIFF, atomically, with ``write_labels``' metadata.

    ``slices`` yields ``prod(shape[:-2])`` arrays of ``shape[-2:]`` (``(Y, X)``, any integer
    dtype; a ``TZYX`` movie's pages time point by time point); only one is held at a time. They are stored as uint16 when ``max_id`` fits, else uint32.
    The file layout and metadata are those of :func:`write_labels` (ImageJ hyperstack for
    uint16, OME-TIFF for uint32 or ``.ome.tif``), so :func:`napari_sam.io.read_image` reads
    back the axes, pixel size, a movie's ``time_interval`` and ``metadata``. The data go to a
    hidden temporary file that is renamed into place only when complete.
    """
    import tifffile

    path = Path(path)
    shape = tuple(int(s) for s in shape)
    ax = validate_axes(axes, shape)
    dtype = np.dtype(np.uint16 if max_id <= np.iinfo(np.uint16).max else np.uint32)
    present = [a for a in SPATIAL if a in ax]
    sizes = dict(zip(present, map(float, pixel_size))) if pixel_size is not None else {}
    user = dict(metadata) if metadata else None
    ome = dtype == np.uint32 or path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    nbytes = int(math.prod(shape)) * dtype.itemsize
    kwargs = _tiff_options(ax, sizes, unit, user, compression, nbytes=nbytes, ome=ome,
                           time=_checked_time(time_interval, ax))

    def pages():
        n = 0
        for s in slices:
            s = np.asarray(s)
            if s.shape != shape[-2:]:
                raise ValueError(f"slice {n} has shape {s.shape}, expected {shape[-2:]}")
            n += 1
            yield s.astype(dtype, copy=False)
        if n != math.prod(shape[:-2]):  # (a TZYX movie: T * Z pages)
            raise ValueError(f"got {n} slices, expected {math.prod(shape[:-2])}")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        tifffile.imwrite(tmp, pages(), shape=shape, dtype=dtype, photometric="minisblack",
                         **kwargs)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        remove_path(tmp)
        naming_output(exc, path, tmp)  # (the file the user asked for)
        raise
    return path


def _is_imagej_order(ax: str) -> bool:
    pos = [AXES_LETTERS.index(a) for a in ax]
    return pos == sorted(pos)


def _write_zarr_atomic(path, out, ax, sizes, unit, user, compression, overwrite,
                       time=None) -> None:
    import zarr

    tmp = tmp_name(path)
    attrs: dict[str, Any] = {"axes": ax}
    if sizes:
        attrs["pixel_size"] = [sizes[a] for a in SPATIAL if a in sizes]
        attrs["unit"] = unit
    if time is not None:
        attrs.update(zarr_time_entries(time))
    if user is not None:
        attrs["napari_sam"] = json.loads(json.dumps(user, default=json_default))
    chunks = tuple([1] * (out.ndim - 2) + [min(s, 1024) for s in out.shape[-2:]])
    old = None
    try:
        if hasattr(zarr, "create_array"):
            kw: dict[str, Any] = {}
            if compression is None:
                kw["compressors"] = None
            z = zarr.create_array(
                store=str(tmp),
                shape=out.shape,
                dtype=out.dtype,
                chunks=chunks,
                dimension_names=list(ax),
                attributes=attrs,
                **kw,
            )
        else:  # zarr 2
            z = zarr.open_array(str(tmp), mode="w", shape=out.shape, dtype=out.dtype, chunks=chunks)
            z.attrs.update({**attrs, "_ARRAY_DIMENSIONS": list(ax)})
        z[...] = out
        _check_overwrite(path, overwrite)
        if path.exists():
            old = tmp_name(path)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException as exc:
        if old is not None and not path.exists():
            os.replace(old, path)
            old = None
        remove_path(tmp)
        naming_output(exc, path, tmp)
        raise
    finally:
        if old is not None:
            remove_path(old)


def json_default(o):
    """``json.dumps``' ``default``: numpy scalars and arrays, paths, tuples and sets."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serialisable")


def write_json_atomic(path: os.PathLike | str, obj, *,
                      tmp: os.PathLike | str | None = None) -> Path:
    """Write ``obj`` as indented JSON to ``path`` via a temporary file (``tmp``, default
    :func:`tmp_name`) and ``os.replace``.

    numpy scalars / arrays, paths, tuples and sets are converted. Returns the path.
    """
    return write_text_atomic(path, json.dumps(obj, indent=2, default=json_default,
                                              allow_nan=False) + "\n", tmp=tmp)


def write_text_atomic(path: os.PathLike | str, text: str, *,
                      tmp: os.PathLike | str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file (``tmp``, default
    :func:`tmp_name`), fsync and ``os.replace``, so that a reader never sees half of it
    (:func:`write_atomic`). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda f: f.write(text), tmp=tmp, text=True)


def write_npz_atomic(path: os.PathLike | str, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` (name -> array, no object arrays) as an uncompressed ``.npz`` file to
    ``path`` through :func:`write_atomic`: a failed write (a full disk) leaves no temporary
    and an existing ``path`` as it was, and its ``OSError`` names ``path``. The archive is
    built in memory first (``np.savez`` needs a readable file). Returns the path."""
    path = Path(path)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda f: f.write(buffer.getbuffer()))


def write_atomic(path: os.PathLike | str, write: Callable[[Any], Any], *,
                 tmp: os.PathLike | str | None = None, text: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it and rename it to
    ``path`` (``os.replace``): a reader never sees half a file. On any failure (Ctrl-C too)
    the temporary is removed and an existing ``path`` is left as it was; an ``OSError`` of
    the write or the rename names ``path``, not the temporary
    (:func:`~napari_sam.io.write_errors.naming_output`).

    Parameters
    ----------
    path : path-like
        The file to write; its folder must exist.
    write : callable
        Writes the whole content to the open file it is given (``torch.save(obj, f)``).
    tmp : path-like, optional
        The temporary name (default :func:`tmp_name`); a writer whose leftovers are found by
        their name gives its own (a checkpoint's ``.NAME.tmp-HOST-PID-NS``).
    text : bool
        Open the file as UTF-8 text (default: binary).
    """
    path = Path(path)
    tmp = tmp_name(path) if tmp is None else Path(tmp)
    try:
        write_synced(tmp, write, path, text=text)
        os.replace(tmp, path)
    except BaseException as exc:
        remove_path(tmp)
        naming_output(exc, path, tmp)  # (the file the user asked for)
        raise
    return path


def write_synced(path: os.PathLike | str, write: Callable[[Any], Any],
                 final: os.PathLike | str | None = None, *, text: bool = False) -> None:
    """Call ``write(file)`` on a new file ``path`` (binary, or UTF-8 with ``text=True``) and
    fsync it; an ``OSError`` of the write is raised naming ``final``, the file ``path`` is
    renamed to later. The file is wrapped in a
    :class:`~napari_sam.io.write_errors.WriteRecorder`: a writer that turns the ``OSError``
    of a full disk into another error (``torch.save``: ``RuntimeError: ... unexpected pos``)
    raises that ``OSError``, and Ctrl-C during the write the ``KeyboardInterrupt`` it is
    (``torch.save`` turns it into a ``RuntimeError`` too: ``train`` then failed with
    "unexpected pos ..." and exit code 1). ``path`` is locked while it is written
    (:func:`~napari_sam.io.dead_temporaries.hold_writer_lock`: a sweep of dead temporaries in
    another container leaves it) and left for the caller to rename or remove."""
    recorder = None
    try:
        with (open(path, "w", encoding="utf-8") if text else open(path, "wb")) as fh:
            hold_writer_lock(fh.fileno())  # its writer runs: remove_dead leaves it
            recorder = WriteRecorder(fh)
            write(recorder)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:
        if recorder is not None and recorder.interrupted and not isinstance(
                exc, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        kept = recorder.error if recorder is not None else None
        if kept is not None and not isinstance(exc, OSError):
            raise naming_output(kept, final or path, path) from None
        naming_output(exc, final or path, path)
        raise


#: File systems of the kernel: their files describe the running system (``/proc``, ``/sys``,
#: ``/dev``); no file of the user's can be stored there.
KERNEL_FILE_SYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
    "securityfs", "configfs", "pstore", "bpf", "mqueue", "hugetlbfs", "fusectl", "binfmt_misc",
})


def file_system_type(path: os.PathLike | str) -> str | None:
    """The type of the file system that holds ``path`` (e.g. ``"proc"``, ``"ext4"``), from
    the mount table of Linux (``/proc/self/mounts``); None where there is none to read."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    real = os.path.realpath(path)
    best, kind = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def unwritable_reason(folder: os.PathLike | str, exc: OSError | None = None) -> str:
    """Why nothing can be written in ``folder``, in words for an error message: for a folder
    on one of :data:`KERNEL_FILE_SYSTEMS` (``/proc``: where creating a folder fails with "No
    such file or directory"), that it holds no files; else the error's own reason
    (``exc.strerror``), "permission denied" without one.

    Parameters
    ----------
    folder : path-like
        The existing folder that refused the write.
    exc : OSError, optional
        The error the write raised.

    Returns
    -------
    str
        E.g. ``"/proc is on the kernel's proc file system, which holds no files"``.
    """
    kind = file_system_type(folder)
    if kind in KERNEL_FILE_SYSTEMS:
        return (f"{folder} is on the kernel's {kind} file system, which describes the running "
                "system and holds no files")
    why = (exc.strerror or str(exc)) if exc is not None else "permission denied"
    return f"{folder}: {why[:1].lower()}{why[1:]}"
