"""Tiled per-slice embeddings of stacks whose slices are larger than the model input.

``embed(stack, model, tiling="auto")`` embeds a stack whose slices are much larger than the
model input (more than 1.5 inputs on the longer side, :func:`napari_sam.tiling.choose_tiling`)
in overlapping windows of the input's size at native scale, and returns a
:class:`TiledStackEmbeddings`; smaller stacks get the ordinary
:class:`napari_sam.embeddings.StackEmbeddings`.

A :class:`TiledStackEmbeddings` is one ordinary :class:`StackEmbeddings` per window of the
:class:`napari_sam.tiling.Tiling` (:meth:`TiledStackEmbeddings.window_stack`), each embedding
a lazy view of its window of every slice (``stack[z, r0:r1, c0:c1]``, read per slice), all
with the contrast limits of the *whole* stack and one shared predictor. ``tiled[z]`` is the
:class:`napari_sam.tiling.TiledEmbedding` of slice z (every window of it).

Memory. Each window keeps its most recent slices in its own LRU; the number per window is
chosen so that all windows together hold at most ``cache_bytes`` (default 1 GiB) of
embeddings, with at least 2 slices per window (a propagation step reads two neighbouring
slices). For a 4096 x 4096 x 32 stack and the demo model (441 windows of 1 MiB) that is 2
slices per window, 882 MiB, instead of the 14 GiB of every slice; for SAM ViT-B (25 windows
of 4 MiB) it is 10 slices per window, 1000 MiB.

Store. With ``store=``, the zarr group holds each window's arrays in its own subgroup
``tiles/r{row}_c{col}`` (an ordinary store of :mod:`napari_sam.embeddings`), and the group's
key includes the tiling (:meth:`Tiling.key`): a store written untiled is recomputed when
opened tiled and vice versa; a rerun with the same tiling reuses every window. The ownership
rules of :mod:`napari_sam.embeddings` hold: a zarr group napari-sam did not write is refused
and never changed.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from napari_sam.embeddings import (
    OWNER_ATTR,
    StackEmbeddings,
    check_stack,
    clear_store,
    open_store,
    stack_intensity_limits,
)
from napari_sam.models.registry import require_family
from napari_sam.predictor import Predictor
from napari_sam.preprocess import DEFAULT_PERCENTILES, check_contrast_limits
from napari_sam.progress import ProgressArg, check_progress, reports_progress
from napari_sam.tiling import TiledEmbedding, Window, choose_tiling
from napari_sam.words import counted, size_words

__all__ = ["DEFAULT_CACHE_BYTES", "SliceView", "TiledStackEmbeddings", "WindowView", "embed"]

#: slices whose zoomed-out view embeddings are kept (see TiledEmbedding.view_embedding)
VIEW_SLICES = 2

#: the embeddings all windows of a tiled stack keep in memory together (at least 2 slices each)
DEFAULT_CACHE_BYTES = 1 << 30
_TILED_FORMAT = 1


class WindowView:
    """A lazy (Z, h, w[, C]) view of one window of every slice of a stack.

    ``view[z]`` reads ``stack[z, r0:r1, c0:c1]`` only (numpy, memmap, zarr and dask alike).

    Parameters
    ----------
    stack : array-like, (Z, Y, X) or (Z, Y, X, C)
    window : napari_sam.tiling.Window
    """

    def __init__(self, stack, window: Window):
        self.base = stack
        self.window = window
        h, w = window.shape
        self.shape = (int(stack.shape[0]), h, w, *(int(s) for s in stack.shape[3:]))
        self.dtype = np.dtype(stack.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, z) -> np.ndarray:
        if not isinstance(z, (int, np.integer)):
            raise TypeError(f"a window view is read one slice at a time, got {z!r}")
        rows, cols = self.window.slices
        return np.asarray(self.base[int(z), rows, cols])


class SliceView:
    """A lazy (Y, X[, C]) view of slice ``z`` of a stack: ``view[rows, cols]`` reads
    ``stack[z, rows, cols]`` only (what a zoomed-out view of a tiled slice reads).

    Parameters
    ----------
    stack : array-like, (Z, Y, X) or (Z, Y, X, C)
    z : int
    """

    def __init__(self, stack, z: int):
        self.base = stack
        self.z = int(z)
        self.shape = tuple(int(s) for s in stack.shape[1:])
        self.dtype = np.dtype(stack.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        return np.asarray(self.base[(self.z, *key)])


class _WindowsOfSlice:
    """The window embeddings of one slice as a sequence, each encoded when read."""

    def __init__(self, stack_embeddings: TiledStackEmbeddings, z: int):
        self.stack_embeddings, self.z = stack_embeddings, z

    def __len__(self) -> int:
        return len(self.stack_embeddings.tiling)

    def __getitem__(self, i: int):
        ws = self.stack_embeddings.window_stack(i)
        ws.compute([self.z])
        return ws[self.z]

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class TiledStackEmbeddings:
    """Lazy per-slice embeddings of a stack, each slice in the windows of a tiling.

    Use :func:`embed` (``tiling="auto"``) to make one. ``tiled[z]`` returns the
    :class:`~napari_sam.tiling.TiledEmbedding` of slice z, computing the windows missing.

    Parameters
    ----------
    stack : array-like, (Z, Y, X) or (Z, Y, X, 3|4)
        Any real or bool dtype; lazy arrays are read one window of one slice at a time.
    model : Sam, str or PathLike
        As for :func:`napari_sam.embed` (SAM 1 models only).
    tiling : Tiling or a choice for :func:`napari_sam.tiling.choose_tiling`
        Default True: tiled with the default halo. A choice that does not tile is an error.
    store : path, optional
        Zarr group to cache the embeddings in (see the module docstring).
    batch_size : int
        Slices per encoder call within one window.
    contrast_limits : (float, float), optional
        Default: the whole stack's ``percentiles`` (up to 16 evenly spaced slices), the
        same for every window.
    cache_bytes : int
        Bytes of embeddings all windows keep in memory together (at least 2 slices each;
        with a ``store``, :meth:`compute` keeps to it whatever the number of windows, down
        to the window under way: the others are read back from the store when used).
    predictor : Predictor, optional
        Shared by every window; default: one made for ``model``, ``device``, ``precision``.
    check_memory : bool
        Refuse (ValueError) a :meth:`compute` without a store, or an ``emb[z]``, whose
        windows would not fit in the memory free (default). The dock passes False: it
        weighs each of its jobs itself (:mod:`napari_sam.annotate.memory_checks`), and a
        click there embeds only the windows it needs.

    Attributes
    ----------
    tiling : Tiling
    shape : (int, int, int)
        (Z, Y, X) of the stack.
    window_cache : int
        Slices each window keeps in memory.
    stopped : bool
        Whether the last :meth:`compute` was stopped by its ``should_stop``.
    whole_slices : bool
        Every window encodes in whole slices per CPU thread
        (:func:`napari_sam.embeddings.encode_whole_slices`): a window's features, and so the
        labels, do not depend on the thread count. Off by default: each window is its own
        encoder call, padded to the thread count, up to 5 times slower (``napari-sam auto``
        leaves it off; docs/cli.md, "CPU threads"). Windows with a store always do.
    """

    def __init__(
        self,
        stack,
        model,
        tiling=True,
        *,
        store: str | os.PathLike | None = None,
        batch_size: int = 4,
        contrast_limits: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        device="auto",
        precision: str = "auto",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        predictor: Predictor | None = None,
        check_memory: bool = True,
    ):
        stack = check_stack(stack, layout=False)  # embed() checked how it is laid out
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1
        ):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.stack = stack
        self.check_memory = bool(check_memory)
        self.shape = tuple(int(s) for s in stack.shape[:3])
        self.predictor = predictor or Predictor(model, device=device, precision=precision)
        self.model = require_family(self.predictor.model, "sam1", "embed (per-slice SAM 1 "
                                    "embeddings for segment_volume)")
        chosen = choose_tiling(self.shape[1:], self.predictor.img_size, tiling)
        if chosen is None:
            raise ValueError(f"tiling={tiling!r} does not tile slices of {self.shape[1:]}; use "
                             "napari_sam.embed(stack, model, tiling=...) to choose either way")
        self.tiling = chosen
        self.batch_size = int(batch_size)
        if contrast_limits is None:
            contrast_limits = stack_intensity_limits(stack, percentiles)
        self.contrast_limits = tuple(float(v) for v in check_contrast_limits(contrast_limits))
        e = int(self.model.embedding_size)
        per_slice = len(self.tiling) * 256 * e * e * 4  # float32 features of every window
        self.window_cache = max(2, int(cache_bytes) // max(1, per_slice))
        self.cache_bytes = int(cache_bytes)
        self._window_bytes = 256 * e * e * 4  # one window of one slice, float32
        self.key = json.dumps(
            {
                "format": _TILED_FORMAT,
                "model_id": self.model.model_id,
                "contrast_limits": self.contrast_limits,
                "shape": list(stack.shape),
                "dtype": str(np.dtype(stack.dtype)),
                "img_size": self.predictor.img_size,
                "tiling": self.tiling.key(),
            },
            sort_keys=True,
        )
        self.store = None if store is None else Path(store)
        self._tiles = self._open_store(self.store) if store is not None else None
        self._windows: dict[int, StackEmbeddings] = {}
        self._view_stack: tuple | None = None  # (view.outer, StackEmbeddings) made last
        self._views: OrderedDict[int, OrderedDict] = OrderedDict()
        self.stopped = False
        self.whole_slices = False

    def _open_store(self, path: Path):
        """The store's ``tiles`` group, cleared when the store's key differs."""
        group = open_store(path)
        if group.attrs.get("key") != self.key or "tiles" not in group:
            clear_store(group)  # only what napari-sam wrote
            group.attrs[OWNER_ATTR] = {"format": _TILED_FORMAT}
            group.create_group("tiles")
            group.attrs.update({"key": self.key, "tiling": self.tiling.key()})
        return group["tiles"]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        z, h, w = self.shape
        store = "" if self.store is None else f", store={str(self.store)!r}"
        return (f"TiledStackEmbeddings({counted(z, 'slice')} of {h} x {w} px in "
                f"{self.tiling!r}{store})")

    @property
    def bytes_in_memory(self) -> int:
        """Bytes of the windows' embeddings kept in memory now (float32; each window's
        slices, at most ``window_cache`` of them; with a store all together at most
        ``cache_bytes`` once a computation ends)."""
        return sum(ws.in_memory for ws in self._windows.values()) * self._window_bytes

    @property
    def encoder_calls(self) -> int:
        """Encoder calls made by every window together (they share one predictor)."""
        return self.predictor.encoder_calls

    @property
    def windows(self) -> list[Window]:
        return self.tiling.windows

    def missing(self, indices: Iterable[int]) -> list[int]:
        """The slices of ``indices`` some window of which is not in memory (using them would
        encode those windows, or read them back from the store)."""
        indices = [int(i) for i in indices]
        absent = set()
        for i in range(len(self.tiling)):
            absent.update(self.window_stack(i).missing(indices))
        return [z for z in indices if z in absent]

    def window_stack(self, i: int) -> StackEmbeddings:
        """The embeddings of window ``i`` (index in ``tiling.windows``) of every slice: an
        ordinary :class:`StackEmbeddings` of shape (Z, h, w), made on first use."""
        i = int(i)
        if i in self._windows:
            return self._windows[i]
        if not 0 <= i < len(self.tiling):
            raise IndexError(f"window {i} is out of range for a tiling of {len(self.tiling)}")
        win = self.tiling.windows[i]
        sub = None
        if self._tiles is not None:
            name = f"r{win.grid[0]}_c{win.grid[1]}"
            self._tiles.require_group(name)
            sub = self.store / "tiles" / name
        emb = StackEmbeddings(
            WindowView(self.stack, win), self.model, store=sub, batch_size=self.batch_size,
            contrast_limits=self.contrast_limits, cache_size=self.window_cache,
            predictor=self.predictor,
        )
        emb.whole_slices = emb.whole_slices or self.whole_slices
        self._windows[i] = emb
        return emb

    def view_stack(self, view: Window) -> StackEmbeddings:
        """The embeddings of a zoomed-out ``view`` (:func:`napari_sam.tiling.zoom_view`) of
        every slice: an ordinary in-memory :class:`StackEmbeddings` of shape (Z, h, w) whose
        slices are shrunk to the model input when encoded (what an object larger than a
        window is propagated in); the last one made is kept."""
        key = tuple(int(v) for v in view.outer)
        if self._view_stack is not None and self._view_stack[0] == key:
            return self._view_stack[1]
        emb = StackEmbeddings(
            WindowView(self.stack, view), self.model, batch_size=self.batch_size,
            contrast_limits=self.contrast_limits, cache_size=2, predictor=self.predictor,
        )
        self._view_stack = (key, emb)
        return emb

    def _keep_to_cache_bytes(self, current: int) -> None:
        """With a store: forget the in-memory embeddings of other windows than ``current``
        while all together hold more than ``cache_bytes`` (an 8000 x 8000 image's 1764
        windows each kept theirs: 2.9 GB for a 0.6 GB store, with the demo model)."""
        if self._tiles is None:
            return
        held = {i: ws.in_memory for i, ws in self._windows.items()}
        total = sum(held.values()) * self._window_bytes
        for i in list(self._windows):  # made first, used longest ago in compute's order
            if total <= self.cache_bytes:
                break
            if i != current and held[i]:
                self._windows[i].forget()
                total -= held[i] * self._window_bytes

    def _check_index(self, z) -> int:
        if not isinstance(z, (int, np.integer)):
            raise TypeError(f"slice index must be an integer, got {type(z).__name__}")
        z = int(z)
        if z < 0:
            z += self.shape[0]
        if not 0 <= z < self.shape[0]:
            raise IndexError(f"slice {z} is out of range for a stack of {self.shape[0]} slices")
        return z

    def __getitem__(self, z) -> TiledEmbedding:
        z = self._check_index(z)
        missing = sum(1 for i in range(len(self.tiling)) if self.window_stack(i).missing([z]))
        problem = (_no_room(missing * self._window_bytes, self.predictor.device)
                   if missing and self.check_memory else None)
        if problem:  # a TiledEmbedding holds every window of its slice, store or not
            raise ValueError(
                f"emb[{z}] holds the embeddings of all {len(self.tiling)} windows of slice {z} "
                f"at once: {problem}; napari_sam.segment_everything(image, model) of the 2D "
                "image itself embeds it window by window, and emb.slice_on_demand(z) encodes "
                "only the windows a prompt needs")
        embs = []
        for i in range(len(self.tiling)):
            ws = self.window_stack(i)
            ws.compute([z])
            embs.append(ws[z])
        return TiledEmbedding(self.tiling, embs, self.model.model_id,
                              image=SliceView(self.stack, z),
                              contrast_limits=self.contrast_limits, views=self._views_of(z))

    def _views_of(self, z: int) -> OrderedDict:
        """The zoomed-out views encoded for slice ``z`` (those of the last
        :data:`VIEW_SLICES` slices asked for are kept)."""
        views = self._views.pop(z, None)
        if views is None:
            views = OrderedDict()
        self._views[z] = views
        while len(self._views) > VIEW_SLICES:
            self._views.popitem(last=False)
        return views

    def slice_on_demand(self, z: int) -> TiledEmbedding:
        """Slice ``z``'s :class:`~napari_sam.tiling.TiledEmbedding` whose windows are encoded
        when a decoder reads them (``emb[z]`` encodes every window of the slice first): what
        decoding a prompt on one slice of a large stack needs (the windows that hold the
        prompt, a zoomed-out view), as a propagation does to choose where an object goes. It
        shares ``emb[z]``'s views: a view a preview encoded is not encoded again."""
        z = self._check_index(z)
        return TiledEmbedding(self.tiling, _WindowsOfSlice(self, z), self.model.model_id,
                              image=SliceView(self.stack, z),
                              contrast_limits=self.contrast_limits, views=self._views_of(z))

    def _check_room(self, todo: list[int]) -> None:
        """Without a store, every window keeps the embeddings of up to :attr:`window_cache` of
        the slices computed (all of a 2D image's windows, however large the image): a
        ValueError before any work when they would not fit in the memory free where they live
        (:func:`napari_sam.memory.device_room`: the GPU's on CUDA, else the host's), saying
        to pass ``store=``."""
        if self._tiles is not None or not todo or not self.check_memory:
            return
        held = sum(ws.in_memory for ws in self._windows.values())
        n = len(set(todo))
        problem = _no_room((len(self.tiling) * min(n, self.window_cache) - held)
                           * self._window_bytes, self.predictor.device)
        if problem:
            h, w = self.shape[1:]
            raise ValueError(
                f"embedding {counted(n, 'slice')} of {h} x {w} px in {len(self.tiling)} "
                f"windows without a store keeps every window's embedding in memory: "
                f"{problem}; give them a store on disk: store='embeddings.zarr' to "
                "napari_sam.embed, or a folder.zarr in the dock's 'Embedding store' box (the "
                "windows are written there and read back when used, so memory stays under "
                f"cache_bytes, {size_words(self.cache_bytes)}), or do not tile (tiling=None; "
                "in the dock: 'Tile large images' unticked; one shrunk embedding per slice)")

    @reports_progress("embed", unit="tile")
    def compute(
        self,
        indices: Iterable[int] | None = None,
        progress: ProgressArg = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TiledStackEmbeddings:
        """Make sure the embeddings of ``indices`` (default: all slices) exist, in the store
        when there is one (in memory only the most recent ``window_cache`` slices per window
        stay).

        Slices go in chunks of ``batch_size``, each chunk through every window.
        ``progress`` (None or False: silent, True: a ``tqdm.auto`` bar, or a callable
        ``progress(done, total)``; TypeError for anything else) counts (slice, window)
        pairs (total = slices x windows) and is called after each window of each chunk; ``should_stop()`` is checked before each,
        and when it returns True the computation stops there (what is done stays stored) and
        :attr:`stopped` is set.
        """
        todo = list(range(self.shape[0])) if indices is None else [
            self._check_index(i) for i in indices]
        self._check_room(todo)
        n = len(self.tiling)
        total, done = len(todo) * n, 0
        self.stopped = False
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for i in range(n):
                if should_stop is not None and should_stop():
                    self.stopped = True
                    return self
                self.window_stack(i).compute(chunk)
                self._keep_to_cache_bytes(i)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if not todo and progress is not None:
            progress(0, 0)
        return self


#: What holding embeddings costs over their float32 features. Measured on the CPU (session
#: 42, the demo model, a 2048 x 2048 image in 121 windows, RSS before and after compute()):
#: the process grew 1.5 x the features' bytes in the reviewer's run (the bare estimate ~35 %
#: under), 1.7 x for 4 slices and 2.1 x for 1 slice in a rerun on a loaded machine (the
#: allocator's overhead, the encoder's buffers it keeps). 1.5 is the floor of those: a
#: refusal then still means it would not fit, and what passes may grow a little past it.
ROOM_MARGIN = 1.5


def _no_room(features: int, device) -> str | None:
    """``features`` bytes of embeddings on ``device`` (times :data:`ROOM_MARGIN`) in words
    beside the memory free where they live, when they are more than it: the GPU's for a CUDA
    device, the host's for the CPU and MPS ("about 7.6 GB, more than the 4.0 GB available
    here", "... the 3.2 GB free on cuda:0", "... the 40.0 MB free on cuda:0"), else None."""
    from napari_sam.memory import device_room

    need = int(features * ROOM_MARGIN)
    free, where = device_room(device)
    if free is None or need <= free:
        return None
    return f"about {size_words(need)}, more than the {size_words(free)} {where}"


def embed(
    stack,
    model,
    *,
    store: str | os.PathLike | None = None,
    batch_size: int = 4,
    contrast_limits: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    device="auto",
    precision: str = "auto",
    cache_size: int = 64,
    compute: bool = False,
    progress: ProgressArg = None,
    tiling="auto",
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> StackEmbeddings | TiledStackEmbeddings:
    """Per-slice embeddings of a stack along its first axis, tiled when its slices are large.

    What ``napari_sam.embed`` is. The arguments are those of
    :func:`napari_sam.embeddings.embed` (the untiled function: ``stack``, ``model``,
    ``store``, ``batch_size``, ``contrast_limits``, ``percentiles``, ``device``,
    ``precision``, ``cache_size``, ``compute``, ``progress``), with these differences:

    Parameters
    ----------
    store : path, optional
        Also reused only when the tiling matches (a tiled store keeps each window in its own
        subgroup ``tiles/r{i}_c{j}``).
    contrast_limits : (float, float), optional
        The same for every slice and every window (default: the whole stack's percentiles).
    cache_size : int
        Embeddings kept in memory (LRU) when not tiled.
    progress : None, bool or callable(done, total)
        As there (True: a ``tqdm.auto`` bar, drawn by the ``compute`` of the embeddings made,
        so it counts what they count: slices, or (slice, window) pairs when tiled ("tile")).
    tiling : "auto", None, False, True, int, (int, int) or Tiling
        ``"auto"`` embeds slices whose longer side exceeds 1.5 model inputs in overlapping
        windows of the model input at native scale (halo: an eighth of the input); None or
        False never tiles; True always; an int is the halo; ``(window, halo)`` sets both
        (see :func:`napari_sam.tiling.choose_tiling`).
    cache_bytes : int
        When tiled: bytes of embeddings kept in memory by all windows together (at least 2
        slices per window).

    Returns
    -------
    StackEmbeddings or TiledStackEmbeddings
        ``emb[z]`` is an :class:`~napari_sam.ImageEmbedding` (untiled) or a
        :class:`~napari_sam.tiling.TiledEmbedding` (tiled, ``emb.tiling`` says how).
    """
    check_progress(progress)  # before any work (the store made, the model loaded)
    stack = check_stack(stack)
    predictor = None
    chosen = None
    if tiling is not None and tiling is not False:
        predictor = Predictor(model, device=device, precision=precision)
        require_family(predictor.model, "sam1", "embed (per-slice SAM 1 embeddings for "
                       "segment_volume)")
        chosen = choose_tiling(tuple(stack.shape[1:3]), predictor.img_size, tiling)
    if chosen is None:
        emb = StackEmbeddings(
            stack, model, store=store, batch_size=batch_size, contrast_limits=contrast_limits,
            percentiles=percentiles, device=device, precision=precision,
            cache_size=cache_size, predictor=predictor,
        )
    else:
        emb = TiledStackEmbeddings(
            stack, model, chosen, store=store, batch_size=batch_size,
            contrast_limits=contrast_limits, percentiles=percentiles, cache_bytes=cache_bytes,
            predictor=predictor,
        )
    if compute:
        emb.compute(progress=progress)
    return emb
