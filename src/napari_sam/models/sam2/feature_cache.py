"""Per-slice SAM 2 image features kept between propagation runs.

Encoding a slice is most of the cost of SAM 2 propagation. When the user adds a correction
prompt and propagates again, the slices are the same, so :class:`Sam2FeatureCache` keeps
each slice's :class:`~napari_sam.models.sam2.model.ImageFeatures` (the image embedding and
the two high-resolution feature maps; the position encoding, the same for every slice, once)
and hands them back instead of encoding again. It is bounded: the least recently used
slices are dropped beyond ``max_bytes`` (at 1024 px a slice takes about 16 MB in float32, so
the default 1 GiB holds some 60 slices; raise it to hold a whole stack).

A cache belongs to one model and stack shape and dtype: its first use records them
(:meth:`Sam2FeatureCache.bind`) and any other use is refused. Each slice's features are kept
with what they were made from (``made_from``: :func:`napari_sam.segment_volume_sam2` passes the
slice's pixel hash and the contrast limits), and a lookup with another ``made_from`` is a miss:
a slice edited since, or another stack of the same shape, is encoded again, never decoded
from stale features.
"""

from __future__ import annotations

from collections import OrderedDict

from .model import ImageFeatures

__all__ = ["Sam2FeatureCache"]


def _nbytes(features: ImageFeatures) -> int:
    tensors = [features.features, *features.high_res]
    return int(sum(t.numel() * t.element_size() for t in tensors))


class Sam2FeatureCache:
    """Least-recently-used store of slices' SAM 2 image features (batch 1).

    Parameters
    ----------
    max_bytes : int
        Bound of the features held (float32 at the model's input size).

    Attributes
    ----------
    hits, misses : int
        Lookups answered from the cache and not.
    key : tuple or None
        What the cache was made for (:meth:`bind`).
    """

    def __init__(self, max_bytes: int = 1 << 30):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a whole number >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.key: tuple | None = None
        self.hits = self.misses = 0
        self._items: OrderedDict[int, ImageFeatures] = OrderedDict()
        self._made_from: dict[int, object] = {}
        self._position = None
        self._bytes = 0

    def bind(self, key: tuple) -> None:
        """Tie the cache to ``key`` (model id, stack shape and dtype, ...) on first use;
        ValueError when it already holds features made for another key."""
        if self.key is None:
            self.key = tuple(key)
        elif self.key != tuple(key):
            raise ValueError(
                "this Sam2FeatureCache holds the features of another model or stack shape "
                f"({self.key}), not of this one ({tuple(key)}); make a new "
                "Sam2FeatureCache() for this stack")

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of the features held."""
        return self._bytes

    def get(self, z: int, made_from=None) -> ImageFeatures | None:
        """Slice z's features, or None (also when they were made from something else than
        ``made_from``, where given)."""
        item = self._items.get(z)
        if item is None or (made_from is not None and self._made_from.get(z) != made_from):
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(z)
        return ImageFeatures(item.features, self._position, item.high_res)

    def put(self, z: int, features: ImageFeatures, made_from=None) -> None:
        """Keep slice z's features, made from ``made_from`` (e.g. the slice's pixel hash and
        contrast limits), dropping the least recently used beyond the bound."""
        size = _nbytes(features)
        if size > self.max_bytes:
            return
        if z in self._items:
            self._bytes -= _nbytes(self._items.pop(z))
        self._position = features.position
        self._items[z] = ImageFeatures(features.features, None, list(features.high_res))
        self._made_from[z] = made_from
        self._bytes += size
        while self._bytes > self.max_bytes:
            old_z, old = self._items.popitem(last=False)
            self._made_from.pop(old_z, None)
            self._bytes -= _nbytes(old)

    def clear(self) -> None:
        """Drop every slice's features (the binding stays)."""
        self._items.clear()
        self._made_from.clear()
        self._bytes = 0
