"""Stack embeddings kept per image and model, so that switching back is instant.

An entry is keyed by the image's identity (a napari layer's ``unique_id``) and data object, the channel axis, the model,
device and precision, and the embedding store; replacing a layer's data makes a new key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["EmbeddingCache", "missing_slices"]


def missing_slices(emb, indices: Iterable[int]) -> list[int]:
    """Slices of ``indices`` whose embedding is not in memory (computing them would encode).

    Uses the memory LRU of :class:`napari_sam.embeddings.StackEmbeddings`; slices only in the
    zarr store count as missing (reading them is cheap but still done in a worker).
    """
    memory = getattr(emb, "_memory", {})
    return [int(i) for i in indices if int(i) not in memory]


class EmbeddingCache:
    """A small LRU of :class:`~napari_sam.embeddings.StackEmbeddings` (``max_entries``)."""

    def __init__(self, max_entries: int = 6):
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[tuple, object] = OrderedDict()

    @staticmethod
    def key(image_id, data, channel_axis, model_key: str, device: str, store,
            precision: str = "auto") -> tuple:
        """The key of an image (``image_id``, its ``data`` object) under these choices."""
        return (
            image_id,
            id(data),
            channel_axis,
            model_key,
            str(device),
            None if store is None else str(store),
            str(precision),
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

    def __len__(self) -> int:
        return len(self._entries)
