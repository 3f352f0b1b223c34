"""Tiled embeddings of images larger than the model input: the window geometry, the choice of
tiling, and the embeddings of one image's windows.

A model sees its square input of ``img_size`` pixels (1024 for SAM, 256 for the demo model).
An image much larger than that is shrunk to fit, and small objects are lost (a 4096 px image
at 1024 px makes a 10 px nucleus 2.5 px). A tiled image is instead embedded at full resolution
in overlapping **windows** of the model input's size:

- Each window is a crop of at most ``img_size`` x ``img_size`` pixels at its native scale
  (no resizing), so every window sees the image at the same scale.
- Windows overlap by at least ``2 * halo`` pixels. The **core** of a window is the part of it
  closer to its own centre than to any neighbour's: the cores partition the image, and every
  core pixel lies at least ``halo`` pixels inside its window (or on the image border). An
  object smaller than the halo whose centre is in a core is whole in that core's window.
- Engines run unchanged on windows (they are ordinary images with ordinary
  :class:`napari_sam.ImageEmbedding` s); what this module's users do across windows is routing
  prompts to the window(s) that hold them, stitching masks by depth (each pixel from the window
  it lies deepest in, :meth:`Tiling.depth`) and keeping each automatic object once (by the core
  that holds its centre).

Coordinates are napari order: (row, col), boxes (row0, col0, row1, col1) with exclusive ends
for windows and cores.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from napari_sam.preprocess import DEFAULT_PERCENTILES, intensity_limits, to_uint8_rgb

__all__ = [
    "AUTO_FACTOR",
    "TiledEmbedding",
    "Tiling",
    "Window",
    "choose_tiling",
    "default_halo",
    "encode_tiled",
    "window_batch",
]

#: tiling turns on ("auto") when the image's longer side exceeds this many model inputs
AUTO_FACTOR = 1.5


def default_halo(img_size: int) -> int:
    """The halo chosen for a model input of ``img_size`` pixels: an eighth of it (128 px for
    SAM's 1024, 32 px for the demo model's 256), so objects up to that size are whole in the
    window whose core holds their centre."""
    return max(1, int(img_size) // 8)


@dataclass(frozen=True)
class Window:
    """One window of a :class:`Tiling`.

    Attributes
    ----------
    index : int
        Position in :attr:`Tiling.windows` (row-major over the grid).
    grid : (int, int)
        (row, col) of the window in the grid of windows.
    outer : (int, int, int, int)
        (row0, col0, row1, col1), ends exclusive: the pixels embedded for this window.
    core : (int, int, int, int)
        (row0, col0, row1, col1), ends exclusive: the pixels this window owns. The cores of a
        tiling partition the image.
    """

    index: int
    grid: tuple[int, int]
    outer: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the window's crop."""
        r0, c0, r1, c1 = self.outer
        return r1 - r0, c1 - c0

    @property
    def offset(self) -> tuple[int, int]:
        """(row, col) of the window's top-left pixel in the image."""
        return self.outer[0], self.outer[1]

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index of the window's crop in the image: ``image[window.slices]``."""
        r0, c0, r1, c1 = self.outer
        return slice(r0, r1), slice(c0, c1)

    def contains(self, rows, cols, *, core: bool = False) -> np.ndarray:
        """Whether the pixel positions (float or int, image frame) lie in the window
        (``core``: in its core). Returns a bool array shaped like ``rows``."""
        r0, c0, r1, c1 = self.core if core else self.outer
        rows, cols = np.asarray(rows, float), np.asarray(cols, float)
        return (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)


def _starts(length: int, window: int, halo: int) -> list[int]:
    """Window starts along one axis: evenly spaced, each overlap >= 2 * halo."""
    if length <= window:
        return [0]
    step = window - 2 * halo
    n = math.ceil((length - window) / step) + 1
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


def _core_bounds(starts: list[int], length: int, window: int) -> list[tuple[int, int]]:
    """Core [lo, hi) of each window along one axis: split at the middles of the overlaps."""
    cuts = [0] + [(starts[i + 1] + min(starts[i] + window, length)) // 2
                  for i in range(len(starts) - 1)] + [length]
    return [(cuts[i], cuts[i + 1]) for i in range(len(starts))]


@dataclass(frozen=True)
class Tiling:
    """Overlapping windows of the model input's size over a 2D image.

    Parameters
    ----------
    image_shape : (int, int)
        (rows, cols) of the image (or of every slice of a stack).
    window : int
        Side of a window in image pixels; the model input size (no resizing).
    halo : int
        Each window reaches at least this far beyond its core (except at the image border);
        ``2 * halo < window``.
    """

    image_shape: tuple[int, int]
    window: int
    halo: int

    def __post_init__(self):
        h, w = (int(v) for v in self.image_shape)
        if h < 1 or w < 1:
            raise ValueError(f"cannot tile an empty image of shape {self.image_shape}")
        if int(self.window) < 8:
            raise ValueError(f"the window side must be at least 8 pixels, got {self.window}")
        if not 0 <= 2 * int(self.halo) < int(self.window):
            raise ValueError(
                f"the halo ({self.halo}) must be >= 0 and less than half the window "
                f"({self.window}); pass a smaller halo"
            )
        object.__setattr__(self, "image_shape", (h, w))

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(rows, cols) of the grid of windows."""
        h, w = self.image_shape
        return (len(_starts(h, self.window, self.halo)),
                len(_starts(w, self.window, self.halo)))

    @functools.cached_property
    def windows(self) -> list[Window]:
        """Every window, row-major over the grid (made once per tiling)."""
        h, w = self.image_shape
        rs, cs = _starts(h, self.window, self.halo), _starts(w, self.window, self.halo)
        rcore, ccore = _core_bounds(rs, h, self.window), _core_bounds(cs, w, self.window)
        out = []
        for i, (r, (cr0, cr1)) in enumerate(zip(rs, rcore)):
            for j, (c, (cc0, cc1)) in enumerate(zip(cs, ccore)):
                out.append(Window(
                    index=len(out), grid=(i, j),
                    outer=(r, c, min(r + self.window, h), min(c + self.window, w)),
                    core=(cr0, cc0, cr1, cc1),
                ))
        return out

    def __len__(self) -> int:
        gh, gw = self.grid_shape
        return gh * gw

    def key(self) -> dict:
        """What identifies the tiling (embedding stores key on it)."""
        return {"image_shape": list(self.image_shape), "window": int(self.window),
                "halo": int(self.halo)}

    def owner(self, row: float, col: float) -> Window:
        """The window whose core holds the pixel position (row, col) (clipped to the image)."""
        h, w = self.image_shape
        row = min(max(float(row), 0.0), h - 1.0)
        col = min(max(float(col), 0.0), w - 1.0)
        for win in self.windows:
            if bool(win.contains(row, col, core=True)):
                return win
        raise AssertionError("the cores do not cover the image")  # pragma: no cover

    def depth(self, win: Window) -> np.ndarray:
        """(rows, cols) float32 of ``win``'s shape: how far each pixel of the window lies from
        the window's edges that are not image borders (an image border does not cut objects,
        so it counts as infinitely far). Stitching takes each pixel from the window where
        this is largest. Made once per window of this tiling (read-only; a tiled click reads
        it in every window it decodes)."""
        cached = self._depths.get(win.index)
        if cached is None or cached.shape != win.shape:
            rows, cols = self._edge_distances(win)
            cached = np.minimum(rows[:, None], cols[None, :])
            cached.flags.writeable = False
            self._depths[win.index] = cached
        return cached

    def depth_at(self, win: Window, row: int, col: int) -> float:
        """``depth(win)[row, col]`` (``row``, ``col`` in the window's frame), without the
        map."""
        rows, cols = self._edge_distances(win)
        return float(min(rows[int(row)], cols[int(col)]))

    @functools.cached_property
    def _depths(self) -> dict[int, np.ndarray]:
        return {}

    def _edge_distances(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """(rows,) and (cols,) float32: each row's and column's distance from the window's
        edges that are not image borders (1e9 for an image border)."""
        h, w = self.image_shape
        r0, c0, r1, c1 = win.outer
        big = np.float32(1e9)
        rr = np.arange(r0, r1, dtype=np.float32)
        cc = np.arange(c0, c1, dtype=np.float32)
        top = rr - r0 + 0.5 if r0 > 0 else np.full_like(rr, big)
        bottom = r1 - rr - 0.5 if r1 < h else np.full_like(rr, big)
        left = cc - c0 + 0.5 if c0 > 0 else np.full_like(cc, big)
        right = c1 - cc - 0.5 if c1 < w else np.full_like(cc, big)
        return np.minimum(top, bottom), np.minimum(left, right)


def choose_tiling(
    image_shape: Sequence[int],
    img_size: int,
    tiling="auto",
) -> Tiling | None:
    """The tiling of an image for a model of input side ``img_size``, or None (no tiling).

    Parameters
    ----------
    image_shape : (int, int) or longer
        (rows, cols, ...) of the image; only the first two count (channels last).
    img_size : int
        The model's input side (``model.img_size``).
    tiling : "auto", None, False, True, int, (int, int) or Tiling
        ``"auto"`` tiles when the longer side exceeds :data:`AUTO_FACTOR` model inputs;
        None or False never tiles; True always tiles (with the default halo); an int is the
        halo (always tiles); ``(window, halo)`` sets both; a :class:`Tiling` is used as given
        (its image shape must match).
    """
    shape = tuple(int(v) for v in tuple(image_shape)[:2])
    img_size = int(img_size)
    if tiling is None or tiling is False:
        return None
    if isinstance(tiling, Tiling):
        if tuple(tiling.image_shape) != shape:
            raise ValueError(f"the tiling is for images of shape {tiling.image_shape}, not "
                             f"{shape}")
        return tiling
    if isinstance(tiling, str):
        if tiling != "auto":
            raise ValueError(f"tiling must be 'auto', None, True, a halo or (window, halo); "
                             f"got {tiling!r}")
        if max(shape) <= AUTO_FACTOR * img_size:
            return None
        return Tiling(shape, img_size, default_halo(img_size))
    if tiling is True:
        return Tiling(shape, img_size, default_halo(img_size))
    if isinstance(tiling, (int, np.integer)) and not isinstance(tiling, bool):
        return Tiling(shape, img_size, int(tiling))
    try:
        window, halo = (int(v) for v in tiling)
    except (TypeError, ValueError):
        raise ValueError(f"tiling must be 'auto', None, True, a halo or (window, halo); "
                         f"got {tiling!r}") from None
    if window > img_size:
        raise ValueError(f"a window of {window} px is larger than the model input "
                         f"({img_size} px): windows are embedded without resizing; use at most "
                         f"{img_size}")
    return Tiling(shape, window, halo)


@dataclass
class TiledEmbedding:
    """The embeddings of one 2D image's windows.

    Attributes
    ----------
    tiling : Tiling
        The windows; ``embeddings[i]`` belongs to ``tiling.windows[i]``.
    embeddings : list of ImageEmbedding
        One per window, each made from the window's crop at native scale
        (``original_size`` is the window's shape).
    model_id : str
        The weights that made them.
    """

    tiling: Tiling
    embeddings: list  # of ImageEmbedding (not imported: the predictor imports this module)
    model_id: str

    @property
    def original_size(self) -> tuple[int, int]:
        """(rows, cols) of the whole image."""
        return self.tiling.image_shape

    @property
    def windows(self) -> list[Window]:
        return self.tiling.windows

    def nbytes(self) -> int:
        """Bytes held by the window features."""
        return sum(e.features.element_size() * e.features.nelement() for e in self.embeddings)


def window_batch(window: int, device) -> int:
    """Windows per encoder call by default: one on a CPU for windows over 512 px (measured on
    a 2-core CPU, bf16: 25 windows of 1024 px with vit_t 7.9 s one by one against 12.2 s in
    batches of 4; vit_b 13.2 s against 13.9 s for 4 windows), else 4 (the demo model's
    256 px windows: 441 in 2.6-3.3 s in batches of 4 against 4.0 s one by one; GPUs)."""
    kind = getattr(device, "type", str(device))
    return 1 if kind == "cpu" and int(window) > 512 else 4


def encode_tiled(
    predictor,
    image,
    tiling: Tiling,
    *,
    contrast_limits: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TiledEmbedding | None:
    """Embed every window of a 2D image.

    Parameters
    ----------
    predictor : Predictor
        Its model encodes each window (``predictor.encode_rgb``).
    image : array-like, (Y, X) or (Y, X, 3|4)
        Any numeric dtype; lazy arrays are read one window at a time.
    tiling : Tiling
        For ``image``'s shape (see :func:`choose_tiling`).
    contrast_limits : (float, float), optional
        Intensities mapped to black and white in every window; default: ``percentiles`` of
        the whole image (so every window has the same contrast).
    batch_size : int, optional
        Windows per encoder call (windows of equal shape are batched); default
        :func:`window_batch` for the predictor's device and the window side.
    progress : callable(done, total), optional
        Called after each encoder call.
    should_stop : callable() -> bool, optional
        Checked before each encoder call; when it returns True, None is returned.

    Returns
    -------
    TiledEmbedding or None
        None when stopped by ``should_stop``.
    """
    shape = tuple(int(v) for v in np.shape(image)[:2])
    if shape != tiling.image_shape:
        raise ValueError(f"the tiling is for images of shape {tiling.image_shape}, not {shape}")
    if contrast_limits is None:
        contrast_limits = intensity_limits(image, percentiles)
    if batch_size is None:
        batch_size = window_batch(tiling.window, getattr(predictor, "device", "cpu"))
    wins = tiling.windows
    embs: list = [None] * len(wins)
    groups: dict[tuple[int, int], list[Window]] = {}
    for win in wins:
        groups.setdefault(win.shape, []).append(win)
    done = 0
    for members in groups.values():
        for i in range(0, len(members), max(1, int(batch_size))):
            if should_stop is not None and should_stop():
                return None
            batch = members[i:i + max(1, int(batch_size))]
            rgbs = [to_uint8_rgb(np.asarray(image[w.slices]), contrast_limits) for w in batch]
            for w, e in zip(batch, predictor.encode_rgb(rgbs)):
                embs[w.index] = e
            done += len(batch)
            if progress is not None:
                progress(done, len(wins))
    return TiledEmbedding(tiling, embs, predictor.model.model_id)
