"""Image normalisation, resizing and the one place where napari coordinates become SAM's.

SAM's image encoder expects an RGB ``uint8``-range image whose longest side is resized to the
model's input size and padded (bottom and right) to a square. Our pipeline is:

1. ``to_uint8_rgb``: any real dtype, (Y, X) or (Y, X, 3|4) -> (Y, X, 3) ``uint8``. Intensities
   are mapped linearly from ``contrast_limits`` (or, by default, the 0.5 and 99.5 percentiles of
   the finite values, computed jointly over channels; the finite minimum and maximum when those
   percentiles coincide, as in a sparse image) to 0..255 and clipped; +inf becomes 255,
   -inf 0, and a NaN pixel the mean of the finite pixels around it (``fill_nan_pixels``:
   scattered missing values look like their surroundings; the inside of NaN areas wider
   than about 10 px stays 0). A constant image becomes all zeros; a bool image is False
   black, True white. Arithmetic is float64 for dtypes float32 cannot hold exactly (float64, 32/64-bit
   integers), so 1e300 or 1e8 + [0, 0.00255] are mapped like any other range.
2. ``smooth_before_enlarging``: only for a model whose metadata asks for it (the bundled demo
   model) and an image the model input enlarges, a Gaussian of a fraction of a pixel, so that
   the image's pixel noise is not magnified into blobs the model reads as structure.
3. ``resize_longest_side``: bilinear resize (PIL, exactly what Meta's ``ResizeLongestSide`` does
   for ``uint8`` images) so that the longest side equals the model's input size.
4. The model normalises with its pixel mean and std and pads (``Sam.normalize_and_pad``).

``encoder_input`` does steps 1 to 4 in numpy for an exported encoder (``encoder.onnx``).

Coordinates in our API are napari order, (row, col); boxes are (row0, col0, row1, col1).
``points_to_model`` and ``boxes_to_model`` convert them to SAM's (x, y) in resized-input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # imported where tensors are made: the dock opens without torch
    import torch

__all__ = [
    "DEFAULT_PERCENTILES",
    "ResizeSpec",
    "boxes_to_model",
    "check_contrast_limits",
    "contrast_limits_name",
    "encoder_input",
    "export_preprocessing",
    "fill_nan_pixels",
    "intensity_limits",
    "is_thin",
    "pad_thin_input",
    "points_to_model",
    "reject_napari_layer",
    "resize_longest_side",
    "smooth_before_enlarging",
    "to_uint8_rgb",
    "validate_image",
    "warn_shrunk_strip",
]

DEFAULT_PERCENTILES = (0.5, 99.5)
#: Gaussian sigma (pixels) of the neighbourhood a NaN pixel's value is taken from.
NAN_FILL_SIGMA = 2.0
#: Least Gaussian weight of finite pixels around a NaN pixel for it to take their mean (else
#: the fallback value): about one finite pixel within 3 px.
NAN_FILL_MIN_WEIGHT = 0.02


def reject_napari_layer(value) -> None:
    """Raise TypeError, saying to pass ``layer.data``, when ``value`` is a napari layer given
    where an array is expected (napari is never imported: the type's module says it)."""
    inner = getattr(value, "__wrapped__", value)  # a plugin's proxy of a layer
    if type(inner).__module__.startswith("napari.layers") and hasattr(inner, "data"):
        raise TypeError(
            f"got the napari {type(inner).__name__} layer {getattr(inner, 'name', '')!r}, not "
            "an array; pass its data: layer.data (with contrast_limits=layer.contrast_limits "
            "to use the contrast napari shows)")


def validate_image(image) -> np.ndarray:
    """Check that ``image`` is a 2D grey or RGB(A) image and return it as an array.

    Raises
    ------
    ValueError
        For empty arrays, non-numeric dtypes and shapes other than (Y, X), (Y, X, 1),
        (Y, X, 3) or (Y, X, 4).
    """
    if isinstance(image, (str, bytes)):
        raise TypeError(
            f"expected an image array, got the {type(image).__name__} {image!r:.60}; read the "
            "file first (e.g. napari_sam.io.read_image(path) or tifffile.imread(path))"
        )
    reject_napari_layer(image)
    try:
        arr = np.asarray(image)
    except ValueError:  # ragged nested lists
        arr = np.array([None, None], dtype=object)
    if arr.dtype == object:
        raise ValueError(
            "the image is not a numeric array (dtype object: ragged rows or mixed types); "
            "give a 2D numpy array of shape (Y, X) or (Y, X, 3|4)"
        )
    if arr.size == 0:
        raise ValueError(f"the image is empty (shape {arr.shape}); give a non-empty 2D image")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"image dtype {arr.dtype} is not numeric; give an integer or float image")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return arr
    if arr.ndim == 3 and arr.shape[0] == 1 and arr.shape[-1] > 4:
        raise ValueError(
            f"the image of shape {arr.shape} is one slice of a stack (or one channel, first); "
            "images are (Y, X) or (Y, X, 3|4): pass image[0] (or embed the stack with "
            "napari_sam.embed)"
        )
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] > 4:
        raise ValueError(
            f"the image of shape {arr.shape} looks channels-first (C, Y, X); images are "
            "(Y, X) or (Y, X, 3|4) with channels last: pass np.moveaxis(image, 0, -1)"
        )
    if arr.ndim == 3 and arr.shape[-1] == 2:
        raise ValueError(
            f"the image of shape {arr.shape} has 2 channels; SAM takes grey or RGB: pick one "
            "channel (image[..., 0]) or make an RGB image"
        )
    hint = (
        "for stacks use napari_sam.embed(stack, model) or pick one slice"
        if arr.ndim > 2
        else "give a 2D array"
    )
    raise ValueError(
        f"expected a 2D image of shape (Y, X) or (Y, X, 3|4), got shape {arr.shape}; {hint}"
    )


def intensity_limits(
    array, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, *, max_samples: int = 2_000_000
) -> tuple[float, float]:
    """Percentile intensity range of the finite values of ``array``.

    Parameters
    ----------
    array : array-like
        Any shape. Large arrays are subsampled with a regular stride to at most
        ``max_samples`` values (deterministic).
    percentiles : (float, float)
        Lower and upper percentile in [0, 100].

    Returns
    -------
    (lo, hi) : tuple of float
        ``hi >= lo``; both 0.0 when there is no finite value. When the two percentiles
        coincide but the values do not (a sparse image: fewer than 0.5 % of its pixels
        bright), the finite minimum and maximum instead, so the image is not mapped to
        black. ``(0.0, 1.0)`` for a bool array.
    """
    lo_p, hi_p = percentiles
    if not (0 <= lo_p < hi_p <= 100):
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    flat = np.asarray(array).reshape(-1)
    if flat.dtype == bool:
        return 0.0, 1.0
    if flat.size > max_samples:
        flat = flat[:: int(np.ceil(flat.size / max_samples))]
    if flat.dtype.kind == "f":
        flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        lo, hi = np.percentile(flat.astype(np.float64, copy=False), [lo_p, hi_p])
    if not hi > lo:
        lo, hi = flat.min(), flat.max()
    return float(lo), float(hi)


def contrast_limits_name(limits) -> str:
    """``"LO-HI"`` for contrast limits in a file or store name: short (``190-270``,
    ``0.5-90``), with as many digits as tell a limit apart from any other float (limits that
    agree to 6 digits, 100.00001 and 100.00002, shared one store name with ``:g``)."""
    def number(value) -> str:
        short = f"{float(value):g}"
        return short if float(short) == float(value) else repr(float(value))

    lo, hi = limits
    return f"{number(lo)}-{number(hi)}"


def check_contrast_limits(contrast_limits) -> tuple[float, float]:
    """``(low, high)`` as two floats; ValueError unless finite with ``high >= low``."""
    try:
        lo, hi = (float(v) for v in np.asarray(contrast_limits, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        lo = hi = np.nan
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        raise ValueError(
            f"contrast_limits must be two finite numbers (low, high) with high >= low, "
            f"got {contrast_limits!r}; e.g. the layer's contrast limits or (0, 255)"
        )
    return lo, hi


def fill_nan_pixels(x: np.ndarray, fallback: float) -> np.ndarray:
    """Give each NaN pixel of a (Y, X) or (Y, X, C) float image the mean of the finite
    pixels around it (Gaussian weights, sigma :data:`NAN_FILL_SIGMA` px, each channel on
    its own); NaN pixels with almost no finite pixel near them (the inside of NaN areas wider
    than about 10 px) get ``fallback``.

    Scattered NaN pixels (missing measurements, a masked detector pixel) made black spots
    inside bright objects, and a click's object then ran through the whole stack. Returns
    ``x`` itself when it has no NaN, else a new array of its dtype without NaN.
    """
    nan = np.isnan(x)
    if not nan.any():
        return x
    from scipy import ndimage as ndi

    sigma = (NAN_FILL_SIGMA, NAN_FILL_SIGMA) + (0.0,) * (x.ndim - 2)
    work = np.result_type(x.dtype, np.float32)  # float64 stays float64: 1e8 + 0.0013
    weight = ndi.gaussian_filter((~nan).astype(work), sigma)
    total = ndi.gaussian_filter(np.where(nan, 0, x).astype(work), sigma)
    reached = nan & (weight >= NAN_FILL_MIN_WEIGHT)
    out = x.copy()
    out[nan] = fallback
    out[reached] = total[reached] / weight[reached]
    return out


def _work_dtype(dtype: np.dtype) -> type:
    """float64 for float64 and 32/64-bit integers (float32 would lose their range or their
    precision: 1e300, 1e8 + 0.001), else float32."""
    return np.float64 if dtype.itemsize >= 4 and dtype != np.float32 else np.float32


def to_uint8_rgb(
    image,
    contrast_limits: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> np.ndarray:
    """Map a 2D grey or RGB(A) image of any dtype to a (Y, X, 3) ``uint8`` RGB image.

    Parameters
    ----------
    image : array-like, (Y, X) or (Y, X, 3|4)
        Any integer or float dtype; alpha is dropped, grey is repeated to 3 channels.
    contrast_limits : (float, float), optional
        Intensities mapped to 0 and 255 (napari's layer contrast limits). ``(0, 255)`` on a
        ``uint8`` image leaves it unchanged, which is what Meta's ``SamPredictor`` sees.
    percentiles : (float, float)
        Used when ``contrast_limits`` is None: the limits are these percentiles of the
        finite values, jointly over channels.

    Returns
    -------
    numpy.ndarray, (Y, X, 3) uint8
    """
    arr = validate_image(image)
    if arr.dtype == bool:
        arr = arr.view(np.uint8)  # False 0, True 1; default limits (0, 1)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if contrast_limits is None:
        lo, hi = intensity_limits(arr, percentiles)
    else:
        lo, hi = check_contrast_limits(contrast_limits)
    if arr.dtype == np.uint8 and lo == 0.0 and hi == 255.0:
        out = arr
    elif hi <= lo:
        out = np.zeros(arr.shape, np.uint8)
        if arr.dtype.kind == "f":
            out[np.isposinf(arr)] = 255
    else:
        work = _work_dtype(arr.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            half = not np.isfinite(hi - lo)  # e.g. (-1e308, 1e308): halve to stay finite
            k = 0.5 if half else 1.0
            x = arr.astype(work)
            if half:
                x *= work(0.5)
            if work is np.float32:
                scaled = (x - np.float32(lo)) * np.float32(255.0 / (hi - lo))
            else:  # (x - lo) / range * 255: exact at the half steps, like float32's
                scaled = x - k * lo
                scaled /= k * hi - k * lo
                scaled *= 255.0
        scaled = np.clip(scaled, 0.0, 255.0)  # +inf 255, -inf 0, NaN stays NaN
        scaled = fill_nan_pixels(scaled, 0.0)
        # round half up, like a viewer's display mapping
        out = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class ResizeSpec:
    """How an image of ``original_size`` maps to a model input of side ``img_size``.

    Attributes
    ----------
    original_size : (int, int)
        (rows, cols) of the image.
    input_size : (int, int)
        (rows, cols) after resizing the longest side to ``img_size`` (before padding).
    img_size : int
        The model's square input side.
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]
    img_size: int

    @classmethod
    def for_image(cls, original_size: tuple[int, int], img_size: int) -> ResizeSpec:
        h, w = (int(v) for v in original_size)
        scale = img_size / max(h, w)
        # same rounding as Meta's ResizeLongestSide.get_preprocess_shape
        return cls((h, w), (int(h * scale + 0.5), int(w * scale + 0.5)), int(img_size))

    @property
    def scale_rc(self) -> tuple[float, float]:
        """Per-axis scale (rows, cols) from original to input pixels."""
        return (
            self.input_size[0] / self.original_size[0],
            self.input_size[1] / self.original_size[1],
        )


def resize_longest_side(rgb: np.ndarray, spec: ResizeSpec) -> np.ndarray:
    """Bilinear resize of a (Y, X, 3) uint8 image to ``spec.input_size`` (PIL, like Meta's)."""
    if rgb.shape[:2] == spec.input_size:
        return rgb
    h, w = spec.input_size
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def smooth_before_enlarging(rgbs: list[np.ndarray], spec: ResizeSpec,
                            sigma: float) -> list[np.ndarray]:
    """Smooth (Y, X, 3) uint8 images that the model input enlarges, before the resize.

    Resizing a small image up to the model's input (a 61 x 57 px slice to 256 px is 4.2x)
    turns its pixel noise into blobs several input pixels wide, which a model trained on
    images at their own scale reads as structure. A model's metadata may therefore ask for a
    Gaussian of ``sigma`` image pixels on images it enlarges (``model.input_smoothing``; the
    bundled demo model: see docs/models.md, "Input smoothing"). Images at or above the input
    size are left as they are: the resize's own filter averages their noise when it shrinks
    them.

    Parameters
    ----------
    rgbs : list of numpy.ndarray, (Y, X, 3) uint8
        Same-sized images.
    spec : ResizeSpec
        Their resize to the model input.
    sigma : float
        Standard deviation in image pixels, along rows and columns; 0 leaves them as they are.

    Returns
    -------
    list of numpy.ndarray, (Y, X, 3) uint8
        The images, smoothed (rounded to the nearest integer) when ``sigma > 0`` and the resize
        enlarges them; otherwise the very arrays given.
    """
    if sigma <= 0 or max(spec.scale_rc) <= 1.0:
        return rgbs
    from scipy import ndimage

    out = []
    for rgb in rgbs:
        grey = rgb.shape[-1] == 3 and bool((rgb[..., 0] == rgb[..., 1]).all()
                                            and (rgb[..., 0] == rgb[..., 2]).all())
        chans = rgb[..., :1] if grey else rgb
        sm = ndimage.gaussian_filter(chans.astype(np.float32), (sigma, sigma, 0), mode="reflect")
        sm = np.clip(np.rint(sm), 0, 255).astype(np.uint8)
        out.append(np.repeat(sm, 3, axis=-1) if grey else sm)
    return out


#: An image (or tiling window) whose resized short side fills less than this fraction of the
#: model input is a thin strip: its padding is a mirror image of it (:func:`pad_thin_input`).
THIN_FRACTION = 0.25
#: ``numpy.pad`` mode of a thin strip's padding ("symmetric": mirrored, edge row repeated).
THIN_PAD_MODE = "symmetric"


def is_thin(spec: ResizeSpec) -> bool:
    """Whether an image resized by ``spec`` fills less than :data:`THIN_FRACTION` of the model
    input on its short side (a strip: 20 x 5000 px, or a 20 px high tiling window)."""
    return min(spec.input_size) < THIN_FRACTION * spec.img_size


def pad_thin_input(resized: np.ndarray, spec: ResizeSpec) -> np.ndarray:
    """Pad resized thin strips to the model's square input with mirror images of themselves.

    SAM pads its input bottom and right with the pixel mean. A strip that fills a small part of
    the input then reads as one object against that flat padding: on a 20 x 5000 px image with
    one bright 10 x 10 px square the demo model's segment everything returned 52 full-height
    blocks of background and a click on the square gave 1741 px. Mirrored padding continues the
    strip's own texture, so the model sees the strip's content instead of its outline (the
    measurements: docs/benchmarks.md, "Thin strips"). Masks are cropped to the valid region
    afterwards as always, and prompts lie on the image, so only the padding's content changes.

    Parameters
    ----------
    resized : numpy.ndarray, (B, h, w, 3) uint8
        Images resized to ``spec.input_size``.
    spec : ResizeSpec

    Returns
    -------
    numpy.ndarray
        ``resized`` itself unless :func:`is_thin`; else (B, S, S, 3) uint8, the images at the
        top left.
    """
    if not is_thin(spec):
        return resized
    h, w = resized.shape[1:3]
    s = spec.img_size
    return np.pad(resized, ((0, 0), (0, s - h), (0, s - w), (0, 0)), mode=THIN_PAD_MODE)


def warn_shrunk_strip(shape, img_size: int, stacklevel: int = 3) -> None:
    """Warn (UserWarning) when an image embedded whole is a strip that the resize to the model
    input shrinks to a thin band (a 20 x 5000 px image becomes 1 x 256 px): objects across it
    cannot be told apart, and a click selects much of the image. Tiling keeps its pixels."""
    spec = ResizeSpec.for_image(tuple(shape)[:2], img_size)
    if max(spec.scale_rc) < 1.0 and is_thin(spec):
        import warnings

        warnings.warn(
            f"the image of {spec.original_size[0]} x {spec.original_size[1]} px is a thin strip: "
            f"resized whole to the model input it is {spec.input_size[0]} x "
            f"{spec.input_size[1]} px, too thin for the model to tell objects apart (a click "
            "selects much of the image); embed it in windows at full resolution instead "
            "(tiling=True, or tiling='auto' with the default)", UserWarning,
            stacklevel=stacklevel)


def images_to_tensor(rgbs: list[np.ndarray], spec: ResizeSpec, device) -> torch.Tensor:
    """Resize (Y, X, 3) uint8 images and stack them as a (B, 3, h, w) float32 tensor (a thin
    strip's padded to (B, 3, S, S): :func:`pad_thin_input`)."""
    import torch

    resized = pad_thin_input(np.stack([resize_longest_side(rgb, spec) for rgb in rgbs]), spec)
    return torch.from_numpy(resized).to(device).permute(0, 3, 1, 2).float()


def encoder_input(image, meta: dict, contrast_limits: tuple[float, float] | None = None
                  ) -> tuple[np.ndarray, ResizeSpec]:
    """The input of an exported image encoder (``encoder.onnx``) for one image, made as
    napari-sam makes its own encoder's: steps 1 to 4 above with the values of the export's
    ``export.json`` (its ``preprocessing``: contrast percentiles, input smoothing, thin
    strips; ``pixel_mean``, ``pixel_std``, ``input_size``), in numpy (no torch).

    Parameters
    ----------
    image : array-like, (Y, X) or (Y, X, 3|4)
        One 2D grey or RGB(A) image of any real dtype.
    meta : dict
        ``export.json`` of an export (:func:`napari_sam.export.export_onnx`), as loaded by
        ``json.load``.
    contrast_limits : (float, float), optional
        Intensities mapped to 0 and 255 (napari's layer contrast limits); default: the
        percentiles ``export.json`` names.

    Returns
    -------
    x : numpy.ndarray, (1, 3, S, S) float32
        RGB, normalised and padded to the export's input size S: the encoder's ``image``.
    spec : ResizeSpec
        The image's resize to the input: :func:`points_to_model` and :func:`boxes_to_model`
        take it to convert napari (row, col) prompts to the decoder's ``point_coords``.

    Raises
    ------
    ValueError
        When ``meta`` is not an ``export.json`` (:func:`export_preprocessing`).
    """
    s, pre, sigma = export_preprocessing(meta)
    rgb = to_uint8_rgb(image, contrast_limits, tuple(pre["contrast"]["percentiles"]))
    spec = ResizeSpec.for_image(rgb.shape[:2], s)
    (rgb,) = smooth_before_enlarging([rgb], spec, sigma)
    resized = pad_thin_input(resize_longest_side(rgb, spec)[None], spec)[0]
    mean = np.asarray(meta["pixel_mean"], np.float32)
    std = np.asarray(meta["pixel_std"], np.float32)
    x = (resized.astype(np.float32) - mean) / std  # a thin strip's is (S, S) already
    x = np.pad(x, ((0, s - x.shape[0]), (0, s - x.shape[1]), (0, 0)))  # zeros: the mean
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32), spec


def export_preprocessing(meta) -> tuple[int, dict, float]:
    """The input size, the ``preprocessing`` entry and the input smoothing's sigma of an
    ONNX export's ``export.json`` (``meta``, as ``json.load`` reads it). An export written
    before the smoothing was recorded (the first ONNX exports) has none: sigma 0, as its
    models did not smooth.

    Raises
    ------
    ValueError
        When ``meta`` lacks what the encoder's input needs (another JSON file: the model's
        metadata, a decoder's config), naming the keys missing.
    """
    pre = meta.get("preprocessing") if isinstance(meta, dict) else None
    missing = ([k for k in ("input_size", "pixel_mean", "pixel_std") if k not in meta]
               if isinstance(meta, dict) else ["input_size", "pixel_mean", "pixel_std"])
    if not isinstance(pre, dict) or "percentiles" not in (pre.get("contrast") or {}):
        missing.append("preprocessing.contrast.percentiles")
    if missing:
        raise ValueError(f"meta is not an ONNX export's export.json (it has no "
                         f"{', '.join(missing)}); pass json.load(open('EXPORT/export.json')) "
                         "of the folder `napari-sam export onnx` wrote")
    sigma = float(((pre.get("smoothing") or {}).get("sigma")) or 0.0)
    return int(meta["input_size"]), pre, sigma


def points_to_model(points_rc, spec: ResizeSpec) -> np.ndarray:
    """Convert (..., 2) napari (row, col) points to SAM's (x, y) in model input pixels."""
    pts = np.asarray(points_rc, dtype=np.float64)
    sr, sc = spec.scale_rc
    return np.stack([pts[..., 1] * sc, pts[..., 0] * sr], axis=-1).astype(np.float32)


def boxes_to_model(boxes_rcrc, spec: ResizeSpec) -> np.ndarray:
    """Convert (..., 4) napari boxes (row0, col0, row1, col1) to SAM's (x0, y0, x1, y1)."""
    b = np.asarray(boxes_rcrc, dtype=np.float64)
    sr, sc = spec.scale_rc
    return np.stack(
        [b[..., 1] * sc, b[..., 0] * sr, b[..., 3] * sc, b[..., 2] * sr], axis=-1
    ).astype(np.float32)
