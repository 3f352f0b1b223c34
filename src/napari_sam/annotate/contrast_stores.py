"""The embedding stores of the layer's contrasts, bounded: those of the few most recent
contrasts are kept, older ones that this session made are deleted.

With an Embedding store and the model seeing the layer's contrast, each contrast gets a store
of its own beside the user's (``emb.contrast-190-270.zarr``,
:meth:`~napari_sam.annotate.model_contrast.ModelContrast.contrast_store`), and none was ever
deleted: each rest of a dragged contrast slider left a store (a SAM 1 slice's features are
256 x 64 x 64 float16, 2 MB: 200 MB for a 100-slice stack, per contrast). A session now keeps
the stores of its :data:`KEEP_CONTRAST_STORES` most recent contrasts (the one in use among
them); an older one is deleted when this session made it (its folder did not exist when the
session first embedded with that contrast) and it still is an embedding store and nothing
else (:func:`napari_sam.embeddings.is_embedding_store`). The user's store (the stack's
percentiles), stores left by earlier sessions or other docks, and folders holding anything
else are never deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from napari_sam.embeddings import is_embedding_store

__all__ = ["KEEP_CONTRAST_STORES", "ContrastStores"]

#: contrast stores kept: those of the most recent contrasts, the one in use among them
KEEP_CONTRAST_STORES = 3


class ContrastStores:
    """The contrast stores a session used (most recent last) and those it made.

    Parameters
    ----------
    keep : int
        How many of the most recent contrasts keep their store.
    """

    def __init__(self, keep: int = KEEP_CONTRAST_STORES):
        self.keep = max(1, int(keep))
        self._recent: list[str] = []
        self._made: set[str] = set()

    def use(self, store) -> list[Path]:
        """The session embeds with a contrast kept in ``store`` from now on (None: the
        stack's percentiles, in the user's store or none: nothing to count). Returns the
        stores this session made that are not among the ``keep`` most recent any more."""
        if store is not None:
            key = str(Path(store).absolute())
            if key in self._recent:
                self._recent.remove(key)
            elif not Path(key).exists():
                self._made.add(key)
            self._recent.append(key)
        return [Path(p) for p in self._recent[: -self.keep] if p in self._made]

    def delete(self, store: Path) -> bool:
        """Delete ``store`` (one :meth:`use` returned) when it still is an embedding store
        and nothing else, and forget it; returns whether it was deleted."""
        key = str(Path(store).absolute())
        if key in self._recent:
            self._recent.remove(key)
        self._made.discard(key)
        if not is_embedding_store(store):
            return False
        shutil.rmtree(store, ignore_errors=True)
        return not Path(store).exists()
