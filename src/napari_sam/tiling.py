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
- A prompt larger than a window (a box over a large object, clicks farther apart than a
  window, a click whose mask reaches the edge of the windows around it) is decoded in a
  **view** instead: a square crop around the prompt, larger than a window and shrunk to the
  model input like any large image (:func:`zoom_view`), encoded when first needed
  (:meth:`TiledEmbedding.view_embedding`).
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
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_sam.preprocess import DEFAULT_PERCENTILES, intensity_limits, to_uint8_rgb
from napari_sam.progress import ProgressArg, reports_progress

__all__ = [
    "AUTO_FACTOR",
    "TiledEmbedding",
    "Tiling",
    "Window",
    "choose_tiling",
    "default_halo",
    "encode_tiled",
    "window_batch",
    "zoom_view",
]

#: tiling turns on ("auto") when the image's longer side exceeds this many model inputs
AUTO_FACTOR = 1.5

#: a view's side is at least this many times the extent of the prompt it shows, rounded up
#: to a window times a power of two (the object fills 20-40 % of the view's side: the demo
#: model's box masks of a disk fell from IoU 0.95-0.97 at 20-40 % to 0.22-0.42 at 75-80 %)
VIEW_MARGIN = 2.5

#: view embeddings a :class:`TiledEmbedding` keeps (the last ones used)
VIEW_CACHE = 4


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
    image : array-like (Y, X) or (Y, X, 3|4), optional
        The image's pixels (read one view at a time; a lazy array stays lazy), so that prompts
        larger than a window can be decoded in a zoomed-out view (:meth:`view_embedding`).
        None: prompts larger than a window are clipped to the windows around them.
    contrast_limits : (float, float), optional
        The intensities the windows were mapped to 8 bits with (views use the same).
    """

    tiling: Tiling
    embeddings: list  # of ImageEmbedding (not imported: the predictor imports this module)
    model_id: str
    image: object = field(default=None, repr=False, compare=False)
    contrast_limits: tuple[float, float] | None = None
    views: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)

    def __repr__(self) -> str:  # one line, not every window's tensor
        return (f"TiledEmbedding({self.tiling!r}: {len(self.embeddings)} window embeddings, "
                f"model_id={self.model_id!r}, contrast_limits={self.contrast_limits})")

    @property
    def original_size(self) -> tuple[int, int]:
        """(rows, cols) of the whole image."""
        return self.tiling.image_shape

    @property
    def windows(self) -> list[Window]:
        return self.tiling.windows

    @property
    def can_zoom_out(self) -> bool:
        """Whether views can be encoded (the image's pixels and contrast limits are known)."""
        return self.image is not None and self.contrast_limits is not None

    def view_embedding(self, predictor, view: Window):
        """The embedding of ``view`` (a :func:`zoom_view` of this image): its crop mapped to 8
        bits with :attr:`contrast_limits` and shrunk to the model input, encoded the first time
        it is asked for; the last :data:`VIEW_CACHE` are kept in :attr:`views` (keyed by the
        view's ``outer`` box).

        Returns
        -------
        ImageEmbedding
            ``original_size`` is the view's shape.
        """
        if not self.can_zoom_out:
            raise ValueError("this tiled embedding was made without its image's pixels, so it "
                             "cannot zoom out: make it with encode_tiled or "
                             "Predictor.set_image, or decode in its windows")
        model_id = getattr(getattr(predictor, "model", None), "model_id", self.model_id)
        if model_id != self.model_id:
            raise ValueError(f"the tiled embedding was made by {self.model_id!r}, not by the "
                             f"predictor's model {model_id!r}")
        key = tuple(int(v) for v in view.outer)
        emb = self.views.get(key)
        if emb is None:
            rgb = to_uint8_rgb(np.asarray(self.image[view.slices]), self.contrast_limits)
            (emb,) = predictor.encode_rgb([rgb])
            self.views[key] = emb
            while len(self.views) > VIEW_CACHE:
                self.views.popitem(last=False)
        self.views.move_to_end(key)
        return emb

    def nbytes(self) -> int:
        """Bytes held by the window features (and the views kept)."""
        embs = list(self.embeddings) + list(self.views.values())
        return sum(e.features.element_size() * e.features.nelement() for e in embs)


def zoom_view(tiling: Tiling, rows, cols, *, side: int | None = None) -> Window:
    """A square view that shows the pixel positions (``rows``, ``cols``) whole, zoomed out.

    Its side is ``side``, else the smallest window times a power of two (at least two
    windows) that is :data:`VIEW_MARGIN` times the positions' extent; it is centred on them
    and moved (not shrunk) to lie in the image, and cut at the image where the image is
    smaller. Like any image larger than the model input, a view is shrunk to the model input
    when encoded (:meth:`TiledEmbedding.view_embedding`).

    Parameters
    ----------
    tiling : Tiling
    rows, cols : array-like (N,) float
        Positions in the image's frame (points, box corners).
    side : int, optional

    Returns
    -------
    Window
        ``index`` -1, ``grid`` (-1, -1), ``core`` equal to ``outer``.
    """
    rows, cols = np.atleast_1d(np.asarray(rows, float)), np.atleast_1d(np.asarray(cols, float))
    h, w = tiling.image_shape
    if side is None:
        extent = max(np.ptp(rows), np.ptp(cols)) + 1.0
        side = 2 * tiling.window
        while side < VIEW_MARGIN * extent and side < max(h, w):
            side *= 2
    side = int(side)

    def place(lo, hi, length):
        start = int(round((lo + hi) / 2 - side / 2))
        start = min(max(start, 0), max(length - side, 0))
        return start, min(start + side, length)

    r0, r1 = place(rows.min(), rows.max(), h)
    c0, c1 = place(cols.min(), cols.max(), w)
    return Window(index=-1, grid=(-1, -1), outer=(r0, c0, r1, c1), core=(r0, c0, r1, c1))


def window_batch(window: int, device) -> int:
    """Windows per encoder call by default: one on a CPU for windows over 512 px (measured on
    a 2-core CPU, bf16: 25 windows of 1024 px with vit_t 7.9 s one by one against 12.2 s in
    batches of 4; vit_b 13.2 s against 13.9 s for 4 windows), else 4 (the demo model's
    256 px windows: 441 in 2.6-3.3 s in batches of 4 against 4.0 s one by one; GPUs)."""
    kind = getattr(device, "type", str(device))
    return 1 if kind == "cpu" and int(window) > 512 else 4


@reports_progress("embed", unit="tile")
def encode_tiled(
    predictor,
    image,
    tiling: Tiling,
    *,
    contrast_limits: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    batch_size: int | None = None,
    progress: ProgressArg = None,
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
    progress : None, bool or callable(done, total)
        None or False: silent; True: a ``tqdm.auto`` bar; a callable: called with the windows
        done after each encoder call (TypeError for anything else, before any work).
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
    return TiledEmbedding(tiling, embs, predictor.model.model_id, image=image,
                          contrast_limits=contrast_limits)
