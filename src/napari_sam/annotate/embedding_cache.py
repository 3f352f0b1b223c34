"""Stack embeddings kept per image and model, so that switching back is instant.

An entry is keyed by the image's identity (a napari layer's ``unique_id``) and data object, the channel axis and channel, the model,
device and precision, the embedding store and the contrast limits the model sees; replacing a
layer's data makes a new key.
The 2D embeddings of a SAM 2 model's slices (for previewing clicks) are kept in memory by
:class:`Sam2SliceEmbeddings`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from napari_sam.words import in_frames

__all__ = ["EmbeddingCache", "Sam2SliceEmbeddings", "describe_embedded", "describe_tiling",
           "missing_slices", "new_embeddings"]


def missing_slices(emb, indices: Iterable[int]) -> list[int]:
    """Slices of ``indices`` whose embedding is not in memory (computing them would encode).

    ``emb.missing`` of :class:`napari_sam.embeddings.StackEmbeddings`,
    :class:`napari_sam.tiled_stack.TiledStackEmbeddings` (a slice some window of which is
    missing) and :class:`Sam2SliceEmbeddings`; slices only in the zarr store count as missing
    (reading them is cheap but still done in a worker).
    """
    return emb.missing(indices)


def describe_embedded(done: int, n: int, tiling=None, sam2_kept: int | None = None,
                      axis_kind: str = "z") -> str:
    """The line beside 'Compute embeddings': ``done`` of ``n`` slices embedded (``tiling``:
    in how many tiles), e.g. "12 of 32 slices embedded"; frames where ``axis_kind`` is "t"
    (a time series: "5 of 12 frames embedded").

    With a SAM 2 model (``sam2_kept`` not None) the embeddings serve clicks only: SAM 2
    propagation encodes the slices it reaches itself and keeps ``sam2_kept`` of them for
    propagating again, e.g. "2 of 6 slices embedded for clicks; 6 of 6 kept for propagating
    again"."""
    tiled = f" in {len(tiling)} tiles" if tiling is not None else ""
    unit = in_frames("slices", axis_kind)
    if n == 1:
        return f"embedded{tiled}" if done else "not embedded yet"
    if sam2_kept is None:
        return f"{done} of {n} {unit} embedded{tiled}"
    kept = (f"; {sam2_kept} of {n} kept for propagating again" if sam2_kept else
            f"; propagation encodes the {unit} as it reaches them")
    return f"{done} of {n} {unit} embedded for clicks{kept}"


def new_embeddings(source, predictor, store=None, tiling="auto", max_memory_slices=256,
                   contrast_limits=None):
    """Empty embeddings of an image source's slices for ``predictor`` (computed on demand),
    the slices mapped to 8-bit with ``contrast_limits`` (low, high; None: the stack's own
    0.5-99.5 percentiles).

    SAM 2 models: :class:`Sam2SliceEmbeddings` (never tiled). SAM 1 models:
    :class:`napari_sam.tiled_stack.TiledStackEmbeddings` when
    :func:`napari_sam.tiling.choose_tiling` tiles the slices' (Y, X) for the model input
    under the session's ``tiling`` ("auto" or None; the tiles' embeddings kept in memory
    bounded by :func:`~.memory_checks.tiles_cache_bytes`: less where memory is short), else
    :class:`napari_sam.embeddings.StackEmbeddings`; both kept in ``store`` if given.
    """
    from napari_sam.tiling import choose_tiling

    if getattr(predictor.model, "family", "sam1") == "sam2":
        return Sam2SliceEmbeddings(source.stack, predictor, contrast_limits=contrast_limits)
    tiles = choose_tiling(source.shape[1:3], predictor.img_size, tiling)
    if tiles is not None:
        from napari_sam.tiled_stack import TiledStackEmbeddings

        from .memory_checks import tiles_cache_bytes

        return TiledStackEmbeddings(source.stack, predictor.model, tiles, store=store,
                                    predictor=predictor, contrast_limits=contrast_limits,
                                    cache_bytes=tiles_cache_bytes(), check_memory=False)
    from napari_sam.embeddings import StackEmbeddings

    return StackEmbeddings(source.stack, predictor.model, store=store, predictor=predictor,
                           cache_size=min(max(64, source.n_slices), max_memory_slices),
                           contrast_limits=contrast_limits)


def describe_tiling(tiling, n_slices: int = 1) -> str:
    """The tiling in words for the status line, e.g. "4096 x 4096 in 441 tiles of 256 px
    (overlapping by 64 px or more)"; ``n_slices`` > 1 adds "on each of N slices"."""
    h, w = tiling.image_shape
    each = f" on each of {n_slices} slices" if n_slices > 1 else ""
    return (f"{h} x {w} in {len(tiling)} tiles of {tiling.window} px (overlapping by "
            f"{2 * tiling.halo} px or more){each}")


class EmbeddingCache:
    """A small LRU of :class:`~napari_sam.embeddings.StackEmbeddings` (``max_entries``)."""

    def __init__(self, max_entries: int = 6):
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[tuple, object] = OrderedDict()

    @staticmethod
    def key(image_id, data, channels, model_key: str, device: str, store,
            precision: str = "auto", tiling="auto", contrast=None) -> tuple:
        """The key of an image (``image_id``, its ``data`` object) under these choices
        (``channels``: the channel axis and the channel segmented, e.g. ``(None, None)``;
        ``tiling``: the session's tiling choice, "auto" or None; ``contrast``: the contrast
        limits the model sees, None for the stack's percentiles)."""
        return (
            image_id,
            id(data),
            channels,
            model_key,
            str(device),
            None if store is None else str(store),
            str(precision),
            str(tiling),
            None if contrast is None else tuple(float(v) for v in contrast),
        )

    def get(self, key):
        emb = self._entries.get(key)
        if emb is not None:
            self._entries.move_to_end(key)
        return emb

    def put(self, key, emb) -> None:
        self._entries[key] = emb
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop_image(self, image_id) -> None:
        """Forget every entry of the image ``image_id`` (e.g. its layer was removed)."""
        for k in [k for k in self._entries if k[0] == image_id]:
            del self._entries[k]

    def drop_store(self, store) -> None:
        """Forget every entry whose embeddings are kept in the zarr store ``store`` (it is
        being deleted: their writes would make a broken store there again)."""
        path = Path(store).absolute()
        for k in [k for k, e in self._entries.items()
                  if getattr(e, "store", None) is not None and Path(e.store).absolute() == path]:
            del self._entries[k]

    def __len__(self) -> int:
        return len(self._entries)


class Sam2SliceEmbeddings:
    """2D embeddings of a stack's slices with a SAM 2 :class:`~napari_sam.predictor.Predictor`,
    for previewing clicks on a slice; what the annotation session uses of
    :class:`napari_sam.embeddings.StackEmbeddings` (which holds SAM 1 embeddings only):
    ``len()``, :meth:`compute`, ``[z]``, ``contrast_limits`` and the in-memory slices.

    Each slice is mapped to 8-bit RGB with ``contrast_limits`` (default: the stack-wide
    percentile limits, as SAM 1's embeddings are) and encoded by ``predictor.encode_rgb``.
    Nothing is written to disk; at most ``cache_size`` slices are kept (a 1024 px SAM 2
    slice embedding holds about 16 MB: 32 slices, 512 MB, as much as SAM 1's 256 float16 slices).

    Parameters
    ----------
    stack : array-like (Z, Y, X) or (Z, Y, X, 3)
        Read one slice at a time.
    predictor : napari_sam.predictor.Predictor
        Of a SAM 2 model.
    cache_size : int
    contrast_limits : (float, float), optional
        Intensities mapped to 0 and 255 (None: the stack's 0.5-99.5 percentiles).
    """

    batch_size = 1

    def __init__(self, stack, predictor, cache_size: int = 32, contrast_limits=None):
        from napari_sam.embeddings import stack_intensity_limits

        self.stack = stack
        self.shape = tuple(int(s) for s in stack.shape)
        self.predictor = predictor
        self.cache_size = max(1, int(cache_size))
        if contrast_limits is None:
            contrast_limits = stack_intensity_limits(stack)
        self.contrast_limits = tuple(float(v) for v in contrast_limits)
        self._memory: OrderedDict[int, object] = OrderedDict()

    def __len__(self) -> int:
        return self.shape[0]

    def compute(self, indices: Iterable[int] | None = None) -> Sam2SliceEmbeddings:
        """Encode the slices of ``indices`` (default all) that are not in memory."""
        from napari_sam.preprocess import to_uint8_rgb

        todo = range(len(self)) if indices is None else [int(i) for i in indices]
        for z in todo:
            if z in self._memory:
                continue
            rgb = to_uint8_rgb(np.asarray(self.stack[z]), self.contrast_limits)
            (self._memory[z],) = self.predictor.encode_rgb([rgb])
            while len(self._memory) > self.cache_size:
                self._memory.popitem(last=False)
        return self

    def missing(self, indices: Iterable[int]) -> list[int]:
        """The slices of ``indices`` whose features are not in memory."""
        return [int(i) for i in indices if int(i) not in self._memory]

    def __getitem__(self, z: int):
        """Slice ``z``'s embedding (a SAM 2 image embedding), encoded if needed."""
        z = int(z)
        if z not in self._memory:
            self.compute([z])
        self._memory.move_to_end(z)
        return self._memory[z]

