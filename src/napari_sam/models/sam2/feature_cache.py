"""Per-slice SAM 2 image features kept between propagation runs.

Encoding a slice is most of the cost of SAM 2 propagation. When the user adds a correction
prompt and propagates again, the slices are the same, so :class:`Sam2FeatureCache` keeps
each slice's :class:`~napari_sam.models.sam2.model.ImageFeatures` (the image embedding and
the two high-resolution feature maps; the position encoding, the same for every slice, once)
and hands them back instead of encoding again. It is bounded: the least recently used
slices are dropped beyond ``max_bytes`` (at 1024 px a slice takes about 16 MB in float32, so
the default 1 GiB holds some 60 slices; raise it to hold a whole stack).

A cache belongs to one stack, model and contrast mapping: its first use records them
(:meth:`Sam2FeatureCache.bind`) and any other use is refused, so features of another stack
are never decoded by mistake.
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
        self._position = None
        self._bytes = 0

    def bind(self, key: tuple) -> None:
        """Tie the cache to ``key`` (model id, stack shape and dtype, contrast limits, ...) on
        first use; ValueError when it already holds features made for another key."""
        if self.key is None:
            self.key = tuple(key)
        elif self.key != tuple(key):
            raise ValueError(
                "this Sam2FeatureCache holds the features of another stack, model or contrast "
                f"mapping ({self.key}), not of this one ({tuple(key)}); make a new "
                "Sam2FeatureCache() for this stack")

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of the features held."""
        return self._bytes

    def get(self, z: int) -> ImageFeatures | None:
        """Slice z's features, or None."""
        item = self._items.get(z)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(z)
        return ImageFeatures(item.features, self._position, item.high_res)

    def put(self, z: int, features: ImageFeatures) -> None:
        """Keep slice z's features (dropping the least recently used beyond the bound)."""
        size = _nbytes(features)
        if size > self.max_bytes:
            return
        if z in self._items:
            self._bytes -= _nbytes(self._items.pop(z))
        self._position = features.position
        self._items[z] = ImageFeatures(features.features, None, list(features.high_res))
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= _nbytes(old)

    def clear(self) -> None:
        """Drop every slice's features (the binding stays)."""
        self._items.clear()
        self._bytes = 0
