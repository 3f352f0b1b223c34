"""Reading images: TIFF (OME, ImageJ, BigTIFF, multi-page), zarr (arrays, and groups through
``napari_sam.io.ome_zarr``: single-array groups, OME-Zarr level 0, bioformats2raw), ``.npy``
and PNG / JPEG pictures, with axes, pixel size and unit from the file's metadata.

:func:`read_image` is the entry point; :class:`ImageReadError` names the file, the reason and a
next step; :func:`check_image_data` refuses data no model can use; :func:`quiet_tifffile` keeps
tifffile's log lines off stderr (the problems they describe become errors instead).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam.io.axes import (
    AXES_LETTERS,
    MIN_INFERRED_SIDE,
    SPATIAL,
    channel_last_axes,
    guess_axes,
    map_tifffile_axes,
    validate_axes,
)
from napari_sam.io.layout import ImageData
from napari_sam.io.ome_zarr import (
    GroupLayoutError,
    level_in_parent,
    open_group_image,
    unreadable_store_hint,
)
from napari_sam.io.time_interval import (
    time_interval_from_imagej,
    time_interval_from_ome,
    time_interval_from_zarr,
)
from napari_sam.memory import is_out_of_memory

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")

#: Photos (underwater, lab cameras): read whole with Pillow, as stored (EXIF orientation is
#: not applied, as napari's reader does not: the dock and the command line see one image).
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageReadError(ValueError):
    """A file could not be read as an image.

    ``path`` is the file, ``reason`` what went wrong; the message also says what to try next.
    """

    def __init__(self, path: os.PathLike | str, reason: str, hint: str | None = None):
        self.path = Path(path)
        self.reason = reason
        hint = hint or (
            "Check that the file is a complete TIFF, OME-TIFF, zarr or .npy image "
            "(open it in Fiji or tifffile), or convert it to TIFF."
        )
        super().__init__(f"Cannot read image {str(self.path)!r}: {reason}. {hint}")


def missing_codec_hint(error_text: str) -> str | None:
    """What to do when tifffile could not decode a file for want of a codec package (its
    message "... requires the 'imagecodecs' package"); None for any other error."""
    package = re.search(r"requires the '([\w.-]+)' package", error_text)
    if package is None:
        return None
    return (f"The file is compressed with a codec that needs the Python package {package[1]}, "
            f"which is not installed: `pip install {package[1]}` (it comes with "
            "napari-sam-stacks; a partial install left it out), or save the file "
            "uncompressed (Fiji: File > Save As > Tiff).")


def _normalise_unit(unit) -> str | None:
    if unit is None:
        return None
    u = str(unit).strip()
    if not u:
        return None
    if u.lower() in ("micron", "microns", "um", "µm", "μm", "\\u00b5m", "micrometer", "micrometre"):
        return "um"
    if u.lower() in ("pixel", "pixels"):
        return None
    return u


def _jsonable_scalars(d: Mapping) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, str | int | float | bool) or v is None:
            out[str(k)] = v
        elif isinstance(v, np.generic):
            out[str(k)] = v.item()
    return out


def _parse_user_json(text) -> dict | None:
    if not isinstance(text, str):
        return None
    try:
        obj = json.loads(text)
    except (ValueError, TypeError):
        return None
    if isinstance(obj, dict) and "napari_sam" in obj:
        return obj["napari_sam"]
    return None


def _pixel_tuple(axes: str, sizes: Mapping[str, float]) -> tuple[float, ...] | None:
    present = [a for a in SPATIAL if a in axes]
    if not any(a in sizes for a in present):
        return None
    return tuple(float(sizes.get(a, 1.0)) for a in present)


def _ome_info(xml: str) -> tuple[dict, str | None, dict | None]:
    """PhysicalSize{X,Y,Z} (by letter), unit and user JSON from the first OME Image."""
    sizes: dict[str, float] = {}
    unit = None
    user = None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return sizes, unit, user
    image = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Image"), None)
    if image is None:
        return sizes, unit, user
    for el in image:
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "Description" and el.text:
            user = _parse_user_json(el.text)
        if tag == "Pixels":
            for letter in "XYZ":
                v = el.get(f"PhysicalSize{letter}")
                if v is not None:
                    try:
                        sizes[letter] = float(v)
                    except ValueError:
                        continue
                    unit = unit or el.get(f"PhysicalSize{letter}Unit", "µm")
    return sizes, _normalise_unit(unit), user


def _resolution_size(page, tag: str) -> float | None:
    t = page.tags.get(tag)
    if t is None:
        return None
    try:
        num, den = t.value
        if num <= 0 or den <= 0:
            return None
        return float(den) / float(num)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _check_not_truncated(path: Path, series) -> None:
    """Cheap check that the series' last bytes lie inside the file (lazy reads fail late)."""
    size = path.stat().st_size
    end = 0
    if series.dataoffset is not None:
        end = int(series.dataoffset) + int(series.nbytes)
    else:
        try:
            last = series.pages[-1] if len(series.pages) else None
            offsets = getattr(last, "dataoffsets", ()) or ()
            counts = getattr(last, "databytecounts", ()) or ()
            end = max((int(o) + int(c) for o, c in zip(offsets, counts)), default=0)
        except Exception:  # tifffile could not even locate the last page
            end = size + 1
    if end > size:
        raise ImageReadError(
            path,
            f"the file is truncated ({size} bytes, but the image data extends to byte {end})",
            "The file was probably not copied or written completely; copy or export it again.",
        )


def _read_tiff(path: Path, axes: str | None, lazy: bool) -> ImageData:
    with quiet_tifffile() as log:
        return _read_tiff_logged(path, axes, lazy, log)


def _read_tiff_logged(path: Path, axes: str | None, lazy: bool, log: list[str]) -> ImageData:
    """Open the TIFF, refuse damage, read its calibration and data, then name its axes."""
    tif = _open_tiff(path)
    try:
        if not tif.series:
            raise ImageReadError(path, "the TIFF file contains no image series")
        series = tif.series[0]
        _refuse_damaged_tiff(path, log)
        src_axes = series.axes
        page = series.pages[0] if series.pages else tif.pages[0]
        md, sizes, unit = _tiff_calibration(tif, page, src_axes)
        md["compression"] = str(getattr(page.compression, "name", page.compression))
        md["bigtiff"] = bool(tif.is_bigtiff)
        md["series_count"] = len(tif.series)
        md["other_series"] = [(str(x.axes), tuple(int(n) for n in x.shape))
                              for x in tif.series[1:4]]  # not read: said by the CLI
        _check_not_truncated(path, series)
        data = _tiff_data(path, series, lazy, md)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(
            path, f"the TIFF data could not be decoded ({type(exc).__name__}: {exc})",
            missing_codec_hint(str(exc))) from exc
    finally:
        tif.close()
    shape = tuple(int(s) for s in data.shape)
    ax = _tiff_axes(path, axes, src_axes, shape, md)
    return ImageData(data, ax, _pixel_tuple(ax, sizes), md, path, unit)


def _open_tiff(path: Path):
    """``tifffile.TiffFile(path)``, its failures as :class:`ImageReadError` (a file that is
    not a TIFF at all names the supported types)."""
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except PermissionError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        if path.suffix.lower() not in TIFF_SUFFIXES:
            raise ImageReadError(
                path, f"{path.suffix or 'a file without suffix'} is not a supported image type",
                "napari-sam reads TIFF (.tif, .tiff, .btf, OME-TIFF), PNG, JPEG, .npy and "
                ".zarr; convert the file, e.g. in Fiji: File > Save As > Tiff.",
            ) from exc
        raise ImageReadError(
            path, f"not a readable TIFF file ({type(exc).__name__}: {exc})"
        ) from exc


def _refuse_damaged_tiff(path: Path, log: list[str]) -> None:
    """Raise when tifffile's log says pages or metadata lie past the end of the file."""
    damage = [m for m in log if any(sign in m for sign in _DAMAGE_SIGNS)]
    if damage:
        raise ImageReadError(
            path,
            "the file is truncated or damaged: pages or metadata point past its end, so "
            f"slices would be lost (tifffile: {' '.join(damage[0].split())[:160]})",
            "The file was probably not copied or written completely; copy or export it "
            "again.",
        )


def _tiff_calibration(tif, page, src_axes: str) -> tuple[dict, dict[str, float], str | None]:
    """``(metadata, pixel sizes by letter, unit)`` from OME, ImageJ or plain TIFF tags."""
    md: dict[str, Any] = {"source_axes": src_axes, "format": "tiff"}
    time = None
    if tif.is_ome and tif.ome_metadata:
        md["format"] = "ome-tiff"
        sizes, unit, user = _ome_info(tif.ome_metadata)
        time = time_interval_from_ome(tif.ome_metadata)
    elif tif.is_imagej and tif.imagej_metadata is not None:
        md["format"] = "imagej-tiff"
        sizes, unit, user = _imagej_calibration(tif.imagej_metadata, page, md)
        time = time_interval_from_imagej(tif.imagej_metadata)
    else:
        sizes, unit, user = _plain_tiff_calibration(tif, page, md)
    if time is not None:
        md["time_interval"] = time
    if user is not None:
        md["user"] = user
    return md, sizes, unit


def _imagej_calibration(ij: Mapping, page, md: dict) -> tuple[dict, str | None, dict | None]:
    """Pixel sizes (spacing, X/YResolution when calibrated), unit and user JSON of an ImageJ
    hyperstack; records the ImageJ properties in ``md``."""
    sizes: dict[str, float] = {}
    md["imagej"] = _jsonable_scalars(ij)
    unit = _normalise_unit(ij.get("unit"))
    user = _parse_user_json(ij.get("Info"))
    xs = _resolution_size(page, "XResolution")
    ys = _resolution_size(page, "YResolution")
    calibrated = (unit is not None or "spacing" in ij or xs not in (None, 1.0)
                  or ys not in (None, 1.0))  # a Y size alone (rows twice as tall) counts
    if calibrated:
        if xs is not None:
            sizes["X"] = xs
        if ys is not None:
            sizes["Y"] = ys
        if "spacing" in ij:
            sizes["Z"] = float(ij["spacing"])
    return sizes, unit, user


def _plain_tiff_calibration(tif, page, md: dict) -> tuple[dict, str | None, dict | None]:
    """Pixel sizes of a plain TIFF (resolution only when its unit is metric: 72 dpi defaults
    mean nothing) and the user JSON of tifffile's shaped metadata."""
    sizes: dict[str, float] = {}
    unit = None
    user = None
    if tif.is_shaped and tif.shaped_metadata:
        shaped = tif.shaped_metadata[0]
        md["shaped"] = _jsonable_scalars(shaped)
        user = shaped.get("napari_sam") if isinstance(shaped.get("napari_sam"), dict) else None
    resunit = page.tags.get("ResolutionUnit")
    factor = {3: 1e4, 4: 1e3, 5: 1.0}.get(int(resunit.value) if resunit else 0)
    if factor is not None:
        xs = _resolution_size(page, "XResolution")
        ys = _resolution_size(page, "YResolution")
        if xs is not None:
            sizes["X"] = xs * factor
        if ys is not None:
            sizes["Y"] = ys * factor
        unit = "um"
    return sizes, unit, user


def _tiff_data(path: Path, series, lazy: bool, md: dict):
    """The series' pixels: in memory, or lazily as a memmap (uncompressed, contiguous) or a
    zarr array over tifffile's store; records which in ``md["lazy"]``."""
    import tifffile

    if not lazy:
        md["lazy"] = False
        return series.asarray()
    shape = tuple(int(s) for s in series.shape)
    data = None
    if series.dataoffset is not None:
        try:
            data = tifffile.memmap(path, series=0, mode="r")
            md["lazy"] = "memmap"
        except Exception:  # fall back to zarr
            data = None
    if data is None:
        import zarr

        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        data = zarr.open(store, mode="r")
        md["lazy"] = "zarr"
    if tuple(data.shape) != shape:
        data = data.reshape(shape) if isinstance(data, np.ndarray) else data
    return data


def _tiff_axes(path: Path, axes: str | None, src_axes: str, shape: tuple[int, ...],
               md: dict) -> str:
    """The user's axes, else tifffile's mapped to ``TZCYX``, else a guess from the shape;
    records which in ``md["axes_from"]``, and in ``md["channels_declared"]`` the number of
    channels of a channel axis the file names (tifffile's ``C``: ImageJ or OME channels, not
    the colour samples ``S`` of an RGB image)."""
    if axes is not None:
        md["axes_from"] = "user"
        return validate_axes(axes, shape)
    ax = map_tifffile_axes(src_axes, shape)
    md["axes_from"] = "metadata"
    if ax is not None and "C" in src_axes.upper():  # channels (ImageJ, OME), not colour samples
        md["channels_declared"] = int(shape[src_axes.upper().index("C")])
    if ax is None:
        try:
            ax = guess_axes(shape)
        except ValueError as exc:
            raise ImageReadError(
                path,
                f"cannot interpret tifffile axes {src_axes!r} for shape {shape}",
                "Pass axes=... (--axes on the command line) with one letter from TZCYX per "
                "dimension.",
            ) from exc
        md["axes_from"] = "guess"
    return ax


def _open_zarr_array(path: Path):
    """Return (array, axes or None, sizes, unit, metadata) for a zarr path."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ImageReadError(
            path, f"not a readable zarr store ({type(exc).__name__}: {exc})",
            unreadable_store_hint(path)) from exc
    md: dict[str, Any] = {"format": "zarr"}
    sizes: dict[str, float] = {}
    unit = None
    axes = None
    if isinstance(node, zarr.Array):
        arr = node
        if (level := level_in_parent(path, md)) is not None:  # stack.zarr/0: the parent's axes
            md["format"] = "ome-zarr"
            axes, sizes, unit = level[0], level[1], _normalise_unit(level[2])
    else:
        try:
            arr, axes, sizes, unit = open_group_image(node, path, md)
        except GroupLayoutError as exc:
            raise ImageReadError(path, exc.reason, exc.hint) from exc
        unit = _normalise_unit(unit)
    attrs = dict(arr.attrs)
    if (time := time_interval_from_zarr(attrs)) is not None:
        md["time_interval"] = time
    if axes is None:
        dims = getattr(getattr(arr, "metadata", None), "dimension_names", None) or attrs.get(
            "_ARRAY_DIMENSIONS"
        )
        if isinstance(attrs.get("axes"), str):
            dims = attrs["axes"]
        if dims and all(isinstance(d, str) and d.upper() in AXES_LETTERS for d in dims):
            cand = "".join(d.upper() for d in dims)
            if len(cand) == arr.ndim and len(set(cand)) == len(cand):
                axes = cand
    if not sizes and isinstance(attrs.get("pixel_size"), list) and axes is not None:
        present = [a for a in SPATIAL if a in axes]
        if len(attrs["pixel_size"]) == len(present):
            sizes = dict(zip(present, map(float, attrs["pixel_size"])))
            unit = _normalise_unit(attrs.get("unit"))
    if isinstance(attrs.get("napari_sam"), dict):
        md["user"] = attrs["napari_sam"]
    return arr, axes, sizes, unit, md


def _read_zarr(path: Path, axes: str | None, lazy: bool) -> ImageData:
    arr, meta_axes, sizes, unit, md = _open_zarr_array(path)
    shape = tuple(int(s) for s in arr.shape)
    if lazy:
        data = arr
        md["lazy"] = "zarr"
    else:
        try:
            data = np.asarray(arr[...])
        except Exception as exc:
            raise ImageReadError(
                path, f"zarr chunks could not be decoded ({type(exc).__name__}: {exc})"
            ) from exc
        md["lazy"] = False
    return _finish(path, data, shape, axes, meta_axes, sizes, unit, md)


def _read_npy(path: Path, axes: str | None, lazy: bool) -> ImageData:
    try:
        data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except Exception as exc:
        if is_out_of_memory(exc):  # a map refused under ulimit -v: not a damaged file
            raise
        raise ImageReadError(
            path, f"not a readable .npy array ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(data, np.ndarray) or data.dtype == object:
        raise ImageReadError(path, "the .npy file does not hold a numeric array")
    md = {"format": "npy", "lazy": "memmap" if lazy else False}
    return _finish(path, data, data.shape, axes, None, {}, None, md)


def _read_photo(path: Path, axes: str | None) -> ImageData:
    """A PNG or JPEG: grey ``(Y, X)`` or colour ``(Y, X, 3|4)`` samples (RGB, RGBA; palette
    and other modes converted to RGB(A), grey with alpha to grey); 16-bit PNGs at 16 bits."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS  # large pictures (mosaics) are what tiling is for
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            frames = int(getattr(im, "n_frames", 1))
            mode = im.mode
            data = _png16_samples(path)  # (Pillow reads these at 8 bits, or not at all)
            if data is not None:
                mode = ("LA" if data.ndim == 2 else "RGB" if data.shape[2] == 3 else "RGBA") + ";16"
            elif mode in ("LA", "1"):  # (1-bit: 0 / 255 grey, as napari shows it)
                im = im.convert("L")
            elif mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
            elif mode not in ("L", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
                im = im.convert("RGB")  # CMYK, YCbCr, ...
            data = np.asarray(im) if data is None else data
    except MemoryError:
        raise ImageReadError(path, "too large to read into memory",
                             "Convert it to a tiled TIFF (read lazily), or crop it.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, RuntimeError) as exc:
        raise ImageReadError(
            path, f"not a readable {path.suffix.lstrip('.').upper()} picture "
            f"({type(exc).__name__}: {exc})", "Check that it opens in an image viewer and "
            "save it again (a truncated copy or another format?), or convert it to TIFF."
        ) from exc
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("="))
    md = {"format": path.suffix.lstrip(".").lower(), "lazy": False, "frames": frames,
          "mode": mode}
    meta_axes = "YXC" if data.ndim == 3 else "YX"
    img = _finish(path, data, data.shape, axes, meta_axes, {}, None, md)
    if data.ndim == 3:
        md["source_axes"] = "YXS"  # colour samples, as an RGB TIFF's (not named channels)
    return img


def _png16_samples(path: Path) -> np.ndarray | None:
    """A 16-bit PNG with colour or alpha decoded by imagecodecs: RGB(A) ``(Y, X, 3|4)``, or
    grey ``(Y, X)`` with its alpha dropped; None for any other file."""
    with open(path, "rb") as f:
        head = f.read(26)  # the signature, then IHDR: bit depth at 24, colour type at 25
    if head[:4] != b"\x89PNG" or head[24:26] not in (b"\x10\x02", b"\x10\x04", b"\x10\x06"):
        return None
    import imagecodecs  # (a dependency: tifffile's codecs)
    data = imagecodecs.png_decode(path.read_bytes())  # (its PngError is a RuntimeError)
    return np.ascontiguousarray(data[..., 0]) if head[25] == 4 else data


def _finish(path, data, shape, axes, meta_axes, sizes, unit, md) -> ImageData:
    shape = tuple(int(s) for s in shape)
    md["source_axes"] = meta_axes
    if axes is not None:
        ax = validate_axes(axes, shape)
        md["axes_from"] = "user"
    elif meta_axes is not None and _valid(meta_axes, shape):
        ax = meta_axes
        md["axes_from"] = "metadata"
    else:
        try:
            ax = guess_axes(shape)
        except ValueError as exc:
            raise ImageReadError(
                path, str(exc), "Pass axes=... (--axes) with one letter from TZCYX per dimension."
            ) from exc
        md["axes_from"] = "guess"
    return ImageData(data, ax, _pixel_tuple(ax, sizes), md, Path(path), unit)


def _valid(axes: str, shape) -> bool:
    try:
        validate_axes(axes, shape)
    except ValueError:
        return False
    return True


def is_zarr_path(path: Path) -> bool:
    """Whether ``path`` is a zarr store: a ``.zarr`` name, or a folder with zarr metadata."""
    if path.suffix.lower() == ".zarr":
        return True
    if path.is_dir():
        return any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))
    return False


def read_image(
    path: os.PathLike | str, *, axes: str | None = None, lazy: bool = False
) -> ImageData:
    """Read an image or stack with its axes and pixel size.

    Parameters
    ----------
    path : path-like
        ``.tif``/``.tiff``/``.ome.tif``/``.btf`` (any TIFF flavour), ``.zarr`` or a zarr
        directory, ``.npy``, or a ``.png``/``.jpg``/``.jpeg`` picture (read whole, as
        stored). Other suffixes are tried as TIFF.
    axes : str, optional
        Override the axes from the file: one letter from ``TZCYX`` per dimension of the data
        as read (``ImageData.shape``). Invalid strings raise ``ValueError`` showing the shape.
    lazy : bool
        Return a memory-mapped or zarr array that reads on indexing instead of loading the
        whole file (see the module docstring for the memory behaviour).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ImageReadError
        (a ``ValueError``) when the file is corrupted or not a supported image; the message
        names the path, the reason and a next step.
    ValueError
        When ``axes`` is invalid for the data.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"Image file not found: {str(p)!r}. Check the path and the working directory."
        )
    if not os.access(p, os.R_OK) or (p.is_dir() and not os.access(p, os.X_OK)):
        raise ImageReadError(p, "permission denied", _PERMISSION_HINT)
    try:
        with quiet_tifffile():
            if is_zarr_path(p):
                img = _read_zarr(p, axes, lazy)
            elif p.suffix.lower() == ".npy":
                img = _read_npy(p, axes, lazy)
            elif p.suffix.lower() in PHOTO_SUFFIXES and p.is_file():
                img = _read_photo(p, axes)
            elif p.is_dir():
                raise ImageReadError(
                    p, "it is a directory but not a zarr store",
                    "Pass an image file or a .zarr directory.",
                )
            else:
                img = _read_tiff(p, axes, lazy)
    except PermissionError as exc:
        raise ImageReadError(p, "permission denied", _PERMISSION_HINT) from exc
    check_image_data(p, img.shape, img.dtype)
    _check_inferred_plane(p, img)
    return img


def axes_inferred(metadata: Mapping) -> bool:
    """Whether no metadata named an image's axes (its ``metadata`` as :func:`read_image`
    records it): guessed from the shape (a ``.npy``, a zarr array without axes), or a TIFF
    whose description gives only its shape (tifffile's default: axes "Q", unknown)."""
    return metadata.get("axes_from") == "guess" or (
        metadata.get("axes_from") == "metadata" and "Q" in str(metadata.get("source_axes") or ""))


def _check_inferred_plane(path: Path, img: ImageData) -> None:
    """Refuse an image whose inferred axes make its slices narrower than
    :data:`~napari_sam.io.axes.MIN_INFERRED_SIDE` pixels, naming the shape and how to give
    the axes (channels last, with as many letters as the data has dimensions, when that
    reading gives slices large enough)."""
    if not axes_inferred(img.metadata):
        return
    size = dict(zip(img.axes, img.shape))
    if min(size["Y"], size["X"]) >= MIN_INFERRED_SIDE:
        return
    shape = tuple(int(s) for s in img.shape)
    axes = channel_last_axes(shape)
    if axes is not None:
        last = shape[-1] - 1
        hint = (f"If the last axis holds channels, give the axes: --axes {axes} --channel N "
                f"(N from 0 to {last}) on the command line (axes={axes!r} and channel=N in "
                "Python); otherwise pass the right axes with --axes.")
    else:
        hint = (f"Each slice needs at least {MIN_INFERRED_SIDE} x {MIN_INFERRED_SIDE} pixels; "
                f"if the file's axes are not {img.axes}, pass the right ones with --axes "
                f"({len(shape)} letters from {AXES_LETTERS}).")
    raise ImageReadError(
        path,
        f"its shape {shape} read as axes {img.axes} (the file does not name its "
        f"axes) gives slices of {size['Y']} x {size['X']} pixels, too small to segment",
        hint,
    )


_PERMISSION_HINT = (
    "Check the file's permissions (ls -l; chmod +r FILE, or run as a user who may read it)."
)


def check_image_data(path: os.PathLike | str, shape: Sequence[int], dtype) -> None:
    """Refuse data no model can use: empty arrays and non-real dtypes.

    Raises
    ------
    ImageReadError
        When a dimension of ``shape`` is 0 or ``dtype`` is not bool, integer or float
        (complex, strings, structured records).
    """
    shape = tuple(int(s) for s in shape)
    dt = np.dtype(dtype)
    if dt.kind not in "biuf":
        what = "complex numbers" if dt.kind == "c" else f"dtype {dt}"
        hint = ("Save a real-valued image, e.g. numpy.abs(a) (magnitude) or a.real, "
                "as .npy or TIFF." if dt.kind == "c" else
                "Save the image as integers or floats (.npy or TIFF).")
        raise ImageReadError(path, f"the data are {what} ({dt}); images must be real numbers",
                             hint)
    if any(s == 0 for s in shape):
        raise ImageReadError(path, f"the image is empty (shape {shape})",
                             "Check the export: every dimension needs at least one pixel.")


class _TifffileLog:
    """A ``logging.Filter`` for tifffile's logger: hands each record to every active
    :func:`quiet_tifffile` block instead of printing it."""

    def __init__(self):
        self.active: list[list[str]] = []

    def filter(self, record) -> bool:
        for messages in self.active:
            messages.append(record.getMessage())
        return False


_TIFFFILE_LOG = _TifffileLog()


@contextlib.contextmanager
def quiet_tifffile():
    """Keep tifffile's log lines (e.g. "invalid page offset" on a truncated file) off stderr.

    Yields the list that collects this block's messages; the problems they describe surface
    as :class:`ImageReadError` messages instead. Blocks nest.
    """
    import logging

    log = logging.getLogger("tifffile")
    messages: list[str] = []
    if not _TIFFFILE_LOG.active:
        log.addFilter(_TIFFFILE_LOG)
    _TIFFFILE_LOG.active.append(messages)
    try:
        yield messages
    finally:
        with contextlib.suppress(ValueError):
            _TIFFFILE_LOG.active.remove(messages)
        if not _TIFFFILE_LOG.active:
            log.removeFilter(_TIFFFILE_LOG)


#: tifffile log messages that mean pages or metadata lie beyond the end of the file: it then
#: returns a shorter series (fewer slices, or a single page) without raising.
_DAMAGE_SIGNS = ("invalid page offset", "invalid value offset", "failed to reshape",
                 "metadata invalid or corrupted")


@dataclasses.dataclass(frozen=True)
class FileHeader:
    """What a file's metadata names about its image (napari's reader drops it; the dock reads
    it back): ``axes`` as stored (e.g. ``"ZCYX"``), ``pixel_size`` per spatial axis in
    ``axes`` order (Z, Y, X; None when the file names none), its ``unit`` and a movie's
    ``time_interval`` (:mod:`napari_sam.io.time_interval`; None where it names none)."""

    axes: str
    pixel_size: tuple[float, ...] | None
    unit: str | None
    time_interval: dict | None = None


_HEADERS: dict[tuple, FileHeader | None] = {}  # (path, times, inode, size) -> header, 8 kept


def file_header(path: os.PathLike | str | None) -> FileHeader | None:
    """The axes, voxel size and unit a file's metadata names (:class:`FileHeader`); None for a
    file whose axes are only guessed (:func:`axes_inferred`: from its shape, or a TIFF whose
    axes tifffile calls unknown, "Q"), a PNG or JPEG picture, one that cannot be read, or no
    path.

    Read once per file version (path, modification and change times, inode, size; a zarr
    folder each time): picking an image in the dock asks for its stack axis, channel axis and
    voxel size, and a large TIFF's metadata is slow to parse.
    """
    if path is None or str(path).lower().endswith(PHOTO_SUFFIXES):  # (no axes to name)
        return None
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    # a file rewritten with its size and time stamp kept (cp -p, rsync -t) has another
    # change time; a zarr folder's metadata changes inside it: read each time
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino,
           stat.st_size)
    if os.path.isdir(path) or key not in _HEADERS:
        try:
            img = read_image(path, lazy=True)
        except (OSError, ValueError, ImageReadError):
            header = None
        else:
            header = (None if axes_inferred(img.metadata)
                      else FileHeader(img.axes, img.pixel_size, img.unit,
                                       img.metadata.get("time_interval")))
        if len(_HEADERS) >= 8:
            _HEADERS.pop(next(iter(_HEADERS)))
        _HEADERS[key] = header
    return _HEADERS[key]


def file_axes(path: os.PathLike | str | None) -> str | None:
    """The axes a file's metadata names, as stored (e.g. ``"ZCYX"``); None for a file whose
    axes are only guessed from its shape, or one that cannot be read (or no path).

    napari's own reader drops a TIFF's axes (a (T, Y, X) movie opens as any 3D layer, a
    (Z, C, Y, X) hyperstack as a 4D layer); the dock reads them here, as the command line
    does.
    """
    header = file_header(path)
    return None if header is None else header.axes


def file_stack_axis(path: os.PathLike | str | None) -> tuple[str, str] | None:
    """The stack axis a file's metadata names, as ``("t", axes)`` for a time series (its
    standard axes begin with T, e.g. ``"TYX"``) or ``("z", axes)`` for a volume; None for a
    2D image, a file whose axes are only guessed from its shape, or one that cannot be read
    (:func:`file_axes`).
    """
    axes = file_axes(path)
    if axes is None:
        return None
    stack = "".join(a for a in axes if a not in "CS")  # channels aside: (T|Z, Y, X) or not
    if len(stack) != 3 or stack[0] not in "TZ":
        return None
    return ("t" if stack[0] == "T" else "z"), axes
