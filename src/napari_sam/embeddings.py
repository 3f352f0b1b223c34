"""Per-slice image embeddings of a stack: batched, cached in memory and optionally in zarr.

``embed(stack, model)`` returns a :class:`StackEmbeddings` that computes slices on demand
(in batches, looking ahead along the axis), keeps the most recent ones in a memory LRU and,
with ``store=``, writes them to a zarr group so that a later run (or an interrupted one)
reuses them.

Cache validity. A store records a *key* made of the model id, the preprocessing settings
(including the intensity limits actually used) and the stack shape; a different key replaces
the store's two arrays (``features``, ``slice_hash``) and recomputes them.

Ownership. A store is a zarr group that this module created: it carries the attribute
``napari_sam_embeddings``. A group that does not (a user's group with a ``raw`` array, the
OME-Zarr group the stack came from) is refused with an error and never written to, so the
store never deletes what it did not write. Each stored slice also records a hash of that slice's pixels, checked
before reuse, so a slice whose data changed is recomputed: nothing stale is reused. A slice
is marked stored only after its features are written, and a slice whose features chunk is
missing or cut short (a power cut: zarr writes without ``fsync``, so the mark may reach the
disk and the features not; a store copied in part) is computed again, not read as zeros.
Embeddings are stored as float16 (half the space; masks agree with float32 to within
rounding at the boundary), and the embeddings this module returns are float16-rounded with
or without a store, so a slice decodes the same whether it was just computed or read back.
The key also holds the predictor's precision and the model's input smoothing, which change
the features.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_sam import preprocess
from napari_sam.io.write_errors import naming_output
from napari_sam.models.registry import require_family
from napari_sam.predictor import ImageEmbedding, Predictor
from napari_sam.preprocess import (
    DEFAULT_PERCENTILES,
    ResizeSpec,
    check_contrast_limits,
    intensity_limits,
    reject_napari_layer,
    to_uint8_rgb,
)
from napari_sam.progress import ProgressArg, reports_progress
from napari_sam.words import counted

__all__ = [
    "OWNER_ATTR",
    "StackEmbeddings",
    "check_stack",
    "clear_store",
    "embed",
    "encode_whole_slices",
    "is_embedding_store",
    "open_store",
    "slice_hash",
    "stack_intensity_limits",
]

_STORE_FORMAT = 1


#: attribute that marks a zarr group as an embedding store written by this module
OWNER_ATTR = "napari_sam_embeddings"
#: the arrays a store holds; nothing else in a group is ever deleted
_OWN_ARRAYS = ("features", "slice_hash")
_OWN_ATTRS = ("key", "input_size", OWNER_ATTR, "napari_sam")
#: what a store's owner may delete: the arrays and a tiled store's window groups
_OWN_MEMBERS = (*_OWN_ARRAYS, "tiles")


def _check_owned(group, path) -> None:
    """ValueError unless ``group`` is new (empty) or an embedding store written here.

    Stores written before the owner mark (attributes ``key`` and ``input_size``, arrays
    ``features`` and ``slice_hash`` only) count as ours.
    """
    if OWNER_ATTR in group.attrs:
        return
    members = sorted(k for k, _ in group.members())
    attrs = sorted(group.attrs.keys())
    if not members and not attrs:
        return  # a new, empty group
    legacy = (
        "key" in group.attrs
        and set(members) <= set(_OWN_ARRAYS)
        and set(attrs) <= set(_OWN_ATTRS)
    )
    if legacy:
        return
    shown = ", ".join(repr(m) for m in members[:6]) + (" ..." if len(members) > 6 else "")
    raise ValueError(
        f"{path} is a zarr group that napari-sam did not create (it holds "
        f"{shown or 'attributes ' + ', '.join(map(repr, attrs[:6]))}); the embedding store "
        "never writes into or deletes from other data. Give a new path for the embeddings, "
        f"e.g. {Path(path).with_name(Path(path).stem + '.embeddings.zarr')}"
    )


def open_store(path):
    """Open (or create) the zarr group of an embedding store at ``path``.

    Raises ValueError, changing nothing, when ``path`` is a file, a folder of other files, a
    zarr array, or a zarr group napari-sam did not create (see :func:`_check_owned`).
    """
    import zarr

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"the embedding store {path} is a file, not a zarr folder; give a new path such "
            "as 'embeddings.zarr' (it is created)"
        )
    zarr_files = (".zgroup", ".zarray", "zarr.json")
    if path.is_dir() and any(path.iterdir()) and not any(
        (path / f).exists() for f in zarr_files
    ):
        raise ValueError(
            f"the embedding store {path} is a folder with other files in it, not a zarr "
            "group; give a new path such as 'embeddings.zarr' (nothing was changed)"
        )
    try:
        group = zarr.open_group(str(path), mode="a")
    except Exception as err:  # noqa: BLE001  (a zarr array there, a broken group, ...)
        _refuse_unwritable(path, err)
        raise ValueError(
            f"cannot use {path} as an embedding store ({type(err).__name__}: {err}); it "
            "holds something else (a zarr array?). Give a new path such as "
            "'embeddings.zarr'; nothing was changed"
        ) from None
    _check_owned(group, path)
    return group


def _refuse_unwritable(path: Path, err: Exception) -> None:
    """ValueError saying that the embedding store cannot be written where ``err`` (from
    opening it) is the file system refusing: read-only, or no permission."""
    code = getattr(err, "errno", None)
    if not isinstance(err, PermissionError) and code != errno.EROFS:
        return
    what = ("is read-only (a read-only file system)" if code == errno.EROFS
            else "cannot be written to (no permission)")
    where = path if path.exists() else next((p for p in path.parents if p.exists()), path)
    raise ValueError(
        f"cannot write the embedding store {path}: {where} {what} ({type(err).__name__}: "
        f"{err}). Give a store path in a folder you can write to (e.g. "
        f"store='~/embeddings/{path.name}'), or leave store out to keep the embeddings in "
        "memory; nothing was changed") from None


def clear_store(group) -> None:
    """Delete what this module wrote into the store ``group`` (its arrays and the window
    groups of a tiled store), nothing else."""
    for name in _OWN_MEMBERS:
        if name in group:
            del group[name]


def is_embedding_store(path) -> bool:
    """Whether the folder ``path`` is an embedding store this module wrote and nothing else:
    a zarr group with its owner mark (:data:`OWNER_ATTR`), holding only its arrays and
    window groups and zarr's own files (a file put there by anyone else: False). Read only;
    False for anything that cannot be read."""
    import zarr

    path = Path(path)
    zarr_files = {"zarr.json", ".zgroup", ".zattrs", ".zmetadata"}
    try:
        if not path.is_dir() or path.is_symlink() or not all(
                p.name in zarr_files or (p.name in _OWN_MEMBERS and p.is_dir())
                for p in path.iterdir()):
            return False
        group = zarr.open_group(str(path), mode="r")
        return OWNER_ATTR in group.attrs and all(k in _OWN_MEMBERS for k, _ in group.members())
    except Exception:  # noqa: BLE001 - not a readable store: not ours to delete
        return False


def _as_stack(stack):
    """Arrays (numpy, zarr, dask, memmap) as they are; lists and tuples as a numpy array."""
    if isinstance(stack, (str, bytes, os.PathLike)):
        raise TypeError(
            f"expected a stack array, got the path {os.fspath(stack)!r:.80}; read it first "
            "(e.g. napari_sam.io.read_image(path)) and pass the array"
        )
    if stack is None:
        raise TypeError("expected a stack array of shape (Z, Y, X) or (Z, Y, X, 3|4), got None")
    reject_napari_layer(stack)
    if hasattr(stack, "array_keys") and not hasattr(stack, "shape"):  # a zarr group
        keys = sorted(stack.array_keys())
        raise TypeError(
            f"expected a stack array, got a zarr group (arrays {keys[:4]}); pass one of its "
            "arrays (an OME-Zarr's full resolution is group['0']), or read the store with "
            "napari_sam.io.read_image(path) and pass its data")
    if hasattr(stack, "shape") and hasattr(stack, "dtype") and hasattr(stack, "__getitem__"):
        return stack
    _refuse_pyramid(stack)
    try:
        arr = np.asarray(stack)
    except ValueError as err:  # ragged
        raise ValueError(
            f"the stack's slices have different shapes ({err}); all slices must be (Y, X) of "
            "one size"
        ) from None
    if arr.dtype == object:
        raise ValueError(
            "the stack's slices have different shapes or types; give one array of shape "
            "(Z, Y, X) or (Z, Y, X, 3|4)"
        )
    return arr


def _refuse_pyramid(stack) -> None:
    """TypeError for a list of the levels of a multiscale pyramid (napari's multiscale data,
    an OME-Zarr's ``[g["0"], g["1"], ...]``): stacks of one number of dimensions, each
    level's (Y, X) smaller than the one before by the same factor (a list of 2D slices of
    different sizes is a ragged stack, not a pyramid)."""
    if not isinstance(stack, (list, tuple)) or len(stack) < 2 or not all(
            hasattr(a, "shape") and len(a.shape) >= 3 for a in stack):
        return
    shapes = [tuple(int(n) for n in a.shape) for a in stack]
    if len({len(s) for s in shapes}) != 1 or 0 in shapes[-1]:
        return
    factors = {(round(a[-2] / b[-2], 1), round(a[-1] / b[-1], 1))
               for a, b in zip(shapes, shapes[1:])}
    if len(factors) != 1 or min(next(iter(factors))) <= 1:
        return
    fy, fx = next(iter(factors))
    raise TypeError(
        f"expected one stack array, got the {len(shapes)} levels of a multiscale pyramid "
        f"(shapes {', '.join(map(str, shapes[:4]))}{' ...' if len(shapes) > 4 else ''}: each "
        f"level {fy:g} x {fx:g} smaller in (Y, X)); pass the full-resolution level, "
        f"levels[0] (shape {shapes[0]})")


def check_stack(stack, layout: bool = True):
    """The stack as an array (lists stacked), or ValueError/TypeError naming what is wrong.

    Parameters
    ----------
    stack : array-like
        (Z, Y, X) or (Z, Y, X, 1|3|4), any real or bool dtype; lazy arrays (memmap, zarr,
        dask) are returned as they are.
    layout : bool
        Also check how an in-memory numpy array (a scripter's) is laid out: one (Y, X, 3|4)
        RGB image is refused, a (Y, X, Z) stack of few slices warned about. Files (the CLI
        names their axes) and the dock's layers are not numpy arrays here.
    """
    stack = _as_stack(stack)
    ndim = len(stack.shape)
    shape = tuple(stack.shape)
    if ndim == 4 and shape[1] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"the stack of shape {shape} looks channels-first (Z, C, Y, X); stacks are "
            "(Z, Y, X) or (Z, Y, X, 3|4) with channels last: pass np.moveaxis(stack, 1, -1)"
        )
    if ndim not in (3, 4) or (ndim == 4 and stack.shape[-1] not in (1, 3, 4)):
        hint = (
            "for a single 2D image use Predictor.set_image"
            if ndim < 3
            else "pick the axis to embed along and index the others (e.g. stack[t] of a "
            "(T, Z, Y, X) series)"
        )
        raise ValueError(
            f"expected a stack of shape (Z, Y, X) or (Z, Y, X, 3|4), got {shape}; {hint}"
        )
    if 0 in stack.shape:
        raise ValueError(
            f"the stack is empty (shape {shape}); give at least one slice with pixels"
        )
    kind = np.dtype(stack.dtype).kind
    if kind not in "biuf":
        raise ValueError(
            f"stack dtype {np.dtype(stack.dtype)} is not numeric; give an integer, float or "
            "bool stack"
        )
    if not (layout and isinstance(stack, np.ndarray)):
        return stack
    if ndim == 3 and shape[-1] in (3, 4) and min(shape[:2]) > shape[-1]:
        raise ValueError(
            f"the stack of shape {shape} looks like one RGB{'A' if shape[-1] == 4 else ''} "
            f"image (Y, X, {shape[-1]}), not {shape[0]} slices of {shape[1]} x {shape[2]} px: "
            "for one image pass image[None] (a stack of one slice) or use "
            "Predictor.set_image(image)")
    if ndim == 3 and shape[2] < 32 and min(shape[:2]) >= 4 * shape[2]:
        import warnings

        warnings.warn(
            f"the stack of shape {shape} is read as {shape[0]} slices of {shape[1]} x "
            f"{shape[2]} px (stacks are (Z, Y, X)); if it is (Y, X, Z), pass "
            "np.moveaxis(stack, -1, 0)", UserWarning, stacklevel=3)
    return stack


def encode_whole_slices(predictor: Predictor, rgbs: list[np.ndarray],
                        max_batch: int = 4) -> list[ImageEmbedding]:
    """Encode same-sized (Y, X, 3) uint8 slices so that each CPU thread encodes whole slices.

    On the CPU the encoder's float rounding can depend on how its threads split the batch:
    measured with the demo model in bfloat16 at 2 threads, a slice encoded alone or in the
    middle of a batch of three differed (up to 0.07 in a feature) from the same slice in a
    batch of 2 or 4, which matched one thread; an interrupted run resumed with other batches
    gave other labels. So a multiple of the thread count is encoded at once, and the rest
    padded with copies of its last slice up to the thread count (one slice per thread, the
    copies' results dropped; while that stays within ``max_batch`` slices, else the rest is
    encoded with one thread per slice). A slice's embedding then does not depend on which
    slices shared its batch. The cost: a lone slice takes as long as with one thread. On
    CUDA and MPS one batch as given.

    Returns
    -------
    list of ImageEmbedding, one per image of ``rgbs``, in order.
    """
    threads = torch.get_num_threads()
    if predictor.device.type != "cpu" or threads <= 1 or len(rgbs) % threads == 0:
        return predictor.encode_rgb(rgbs)
    head = len(rgbs) - len(rgbs) % threads
    out = predictor.encode_rgb(rgbs[:head]) if head else []
    tail = rgbs[head:]
    if threads <= max_batch:  # padded: no change of torch's (process-wide) thread count
        return out + predictor.encode_rgb(tail + [tail[-1]] * (threads - len(tail)))[:len(tail)]
    torch.set_num_threads(len(tail))
    try:
        return out + predictor.encode_rgb(tail)
    finally:
        torch.set_num_threads(threads)


def slice_hash(arr: np.ndarray) -> int:
    """Non-zero 63-bit hash of one slice's pixels, dtype and shape."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return (int.from_bytes(h.digest(), "little") >> 1) or 1


def stack_intensity_limits(
    stack, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, max_slices: int = 16
) -> tuple[float, float]:
    """Volume-wide percentile limits from up to ``max_slices`` evenly spaced slices."""
    n = int(stack.shape[0])
    idx = np.unique(np.linspace(0, n - 1, min(n, max_slices)).round().astype(int))
    sample = np.stack([np.asarray(stack[int(i)]) for i in idx])
    return intensity_limits(sample, percentiles)


class StackEmbeddings:
    """Lazy per-slice embeddings of a (Z, Y, X) or (Z, Y, X, C) stack.

    Use :func:`embed` to make one. Indexing ``emb[z]`` returns an :class:`ImageEmbedding`,
    computing it (and up to ``batch_size - 1`` following missing slices) when needed.

    Attributes
    ----------
    shape : (int, int, int)
        (Z, Y, X) of the stack.
    predictor : Predictor
        Decodes prompts with the same model and device.
    encoder_calls : int
        Number of batched encoder calls made (tests assert caching with it).
    whole_slices : bool
        Encode in whole slices per CPU thread (:func:`encode_whole_slices`), so that a
        slice's features do not depend on which slices shared its batch: True with a store
        (runs resume from it), and where slices are computed over several runs into another
        store (the blocks of a cluster run set it); False otherwise (a lone slice is then
        faster on several threads).
    read_back, stale : int
        Slices :meth:`compute` read back from the store (an earlier run's, resumed), and
        slices whose stored features were made from other pixels (the input changed since)
        and are computed again.
    """

    def __init__(
        self,
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
        predictor: Predictor | None = None,
    ):
        stack = check_stack(stack, layout=False)  # embed() checked how it is laid out
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1
        ):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if contrast_limits is not None:
            contrast_limits = check_contrast_limits(contrast_limits)
        self.stack = stack
        self.shape = tuple(int(s) for s in stack.shape[:3])
        self.predictor = predictor or Predictor(model, device=device, precision=precision)
        self.model = require_family(self.predictor.model, "sam1", "embed (per-slice SAM 1 "
                                    "embeddings for segment_volume)")
        self.batch_size = int(batch_size)
        self.cache_size = max(1, int(cache_size))
        if contrast_limits is None:
            contrast_limits = stack_intensity_limits(stack, percentiles)
        self.contrast_limits = tuple(float(v) for v in contrast_limits)
        self.spec = ResizeSpec.for_image(self.shape[1:], self.predictor.img_size)
        # a thin strip's padding (mirrored since session 38; stores of other strips' features
        # stay valid: the entry is only in thin slices' keys)
        thin = ({"thin_padding": preprocess.THIN_PAD_MODE} if preprocess.is_thin(self.spec)
                else {})
        self.key = json.dumps(
            {
                **thin,
                "format": _STORE_FORMAT,
                "model_id": self.model.model_id,
                "contrast_limits": self.contrast_limits,
                "shape": list(stack.shape),
                "dtype": str(np.dtype(stack.dtype)),
                "img_size": self.predictor.img_size,
                # the encoder's arithmetic and input smoothing change the features too
                "precision": self.predictor.precision,
                "input_smoothing": float(getattr(self.model, "input_smoothing", 0.0)),
            },
            sort_keys=True,
        )
        self._memory: OrderedDict[int, ImageEmbedding] = OrderedDict()
        self._group = self._open_store(store) if store is not None else None
        self.store = None if store is None else Path(store)
        self.whole_slices = store is not None
        self.read_back = self.stale = 0

    # ------------------------------------------------------------------ store
    def _open_store(self, path):
        e = int(self.model.embedding_size)
        group = open_store(path)
        if group.attrs.get("key") != self.key or "features" not in group:
            clear_store(group)  # only what this module wrote
            group.attrs[OWNER_ATTR] = {"format": _STORE_FORMAT}
            group.create_array(
                "features",
                shape=(self.shape[0], 256, e, e),
                chunks=(1, 256, e, e),
                dtype="float16",
                fill_value=0,
            )
            group.create_array(
                "slice_hash", shape=(self.shape[0],), chunks=(self.shape[0],), dtype="int64",
                fill_value=0,
            )
            group.attrs.update({"key": self.key, "input_size": list(self.spec.input_size)})
        return group

    def stored(self) -> np.ndarray:
        """Boolean (Z,) of slices present in the store (not re-hashed)."""
        if self._group is None:
            return np.zeros(self.shape[0], bool)
        return np.asarray(self._group["slice_hash"][:]) != 0

    def _read_store(self, z: int, data_hash: int) -> ImageEmbedding | None:
        if self._group is None:
            return None
        stored = int(self._group["slice_hash"][z])
        if stored != data_hash:
            self.stale += stored != 0  # made from other pixels: computed again
            return None
        try:
            raw = np.asarray(self._group["features"][z], dtype=np.float32)
        except OSError:
            raise
        except Exception:  # noqa: BLE001 - its chunk cut short (a power cut): computed again
            return None
        if not raw.any():  # its chunk is missing (a power cut after the hash was written, a
            return None  # partial copy): zarr gives zeros, which no image's features are
        return self._make(torch.from_numpy(raw).to(self.predictor.device))

    def _write_store(self, z: int, emb: ImageEmbedding, data_hash: int) -> None:
        if self._group is None:
            return
        try:
            self._group["features"][z] = emb.features.detach().cpu().to(torch.float16).numpy()
            # the hash is written after the features: an interrupted write is recomputed
            self._group["slice_hash"][z] = data_hash
        except OSError as exc:  # a full disk: the error names the store (zarr names nothing)
            naming_output(exc, self.store)
            raise

    # ------------------------------------------------------------------ compute
    def _make(self, feats: torch.Tensor) -> ImageEmbedding:
        # contiguous, as read back from the store: the encoder's are channels-last, and bf16
        # decodes of the two layouts differed (a resumed run's labels were not a clean run's)
        return ImageEmbedding(
            feats.contiguous(), self.spec.original_size, self.spec.input_size,
            self.model.model_id
        )

    def _remember(self, z: int, emb: ImageEmbedding) -> None:
        self._memory[z] = emb
        self._memory.move_to_end(z)
        while len(self._memory) > self.cache_size:
            self._memory.popitem(last=False)

    def slice_image(self, z: int) -> np.ndarray:
        arr = np.asarray(self.stack[z])
        return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr

    @property
    def encoder_calls(self) -> int:
        return self.predictor.encoder_calls

    @property
    def in_memory(self) -> int:
        """How many slices' embeddings are kept in memory now (at most ``cache_size``)."""
        return len(self._memory)

    def forget(self) -> None:
        """Drop the embeddings kept in memory (those in the store are read back when used
        again; without a store they are encoded again)."""
        self._memory.clear()

    def missing(self, indices: Iterable[int]) -> list[int]:
        """The slices of ``indices`` whose embedding is not in memory (using them would
        encode them, or read them back from the store)."""
        return [int(i) for i in indices if int(i) not in self._memory]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        z, h, w = self.shape
        store = "" if self.store is None else f", store={str(self.store)!r}"
        return (f"StackEmbeddings({counted(z, 'slice')} of {h} x {w} px, "
                f"{len(self._memory)} in memory, "
                f"model_id={getattr(self.model, 'model_id', None)!r}{store})")

    def _check_index(self, z) -> int:
        if not isinstance(z, (int, np.integer)):
            raise TypeError(f"slice index must be an integer, got {type(z).__name__}")
        z = int(z)
        if z < 0:
            z += self.shape[0]
        if not 0 <= z < self.shape[0]:
            raise IndexError(f"slice {z} is out of range for a stack of {self.shape[0]} slices")
        return z

    def __getitem__(self, z) -> ImageEmbedding:
        z = self._check_index(z)
        if z in self._memory:
            self._memory.move_to_end(z)
            return self._memory[z]
        # never look further ahead than the cache holds, or z itself would be evicted
        n = min(self.batch_size, self.cache_size)
        ahead = [i for i in range(z, min(z + n, self.shape[0])) if i not in self._memory]
        self.compute(ahead)
        return self._memory[z]

    @reports_progress("embed", unit="slice")
    def compute(
        self,
        indices: Iterable[int] | None = None,
        progress: ProgressArg = None,
    ) -> StackEmbeddings:
        """Make sure the embeddings of ``indices`` (default: all slices) exist.

        Slices found in the store with a matching pixel hash are loaded, the rest are encoded
        in batches of ``batch_size`` and written to the store as they finish, so an interrupted
        run resumes where it stopped. ``progress``: None or False (silent), True (a
        ``tqdm.auto`` bar) or a callable ``progress(done, total)``, called after each batch
        (TypeError for anything else, before any work).
        """
        todo: Sequence[int] = (
            range(self.shape[0]) if indices is None else [self._check_index(i) for i in indices]
        )
        total = len(todo)
        done = 0
        pending: list[tuple[int, np.ndarray, int]] = []

        def flush():
            nonlocal done
            rgbs = [to_uint8_rgb(a, self.contrast_limits) for _, a, _ in pending]
            # float16-rounded like the store's copies, so that an embedding decodes the same
            # whether it was just computed or read back (a rerun, a replayed session)
            # a store's slices may be computed over several runs: each in whole slices per
            # thread, so that a resumed run gives the embeddings of an uninterrupted one
            encoded = (encode_whole_slices(self.predictor, rgbs, self.batch_size)
                       if self.whole_slices else self.predictor.encode_rgb(rgbs))
            embs = [self._make(e.features.to(torch.float16).float()) for e in encoded]
            for (z, _, hsh), emb in zip(pending, embs):
                self._write_store(z, emb, hsh)
                self._remember(z, emb)
            done += len(pending)
            pending.clear()
            if progress is not None:
                progress(done, total)

        for z in todo:
            if z in self._memory:
                done += 1
                continue
            arr = self.slice_image(z)
            hsh = slice_hash(arr)
            emb = self._read_store(z, hsh)
            if emb is not None:
                self._remember(z, emb)
                self.read_back += 1
                done += 1
                continue
            pending.append((z, arr, hsh))
            if len(pending) == self.batch_size:
                flush()
        if pending:
            flush()
        elif progress is not None:
            progress(done, total)
        return self


@reports_progress("embed", unit="slice")
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
) -> StackEmbeddings:
    """Per-slice embeddings of a stack along its first axis, never tiled.

    :func:`napari_sam.embed` (:func:`napari_sam.tiled_stack.embed`) takes the same arguments
    and ``tiling=`` (slices much larger than the model input are embedded in windows).

    Parameters
    ----------
    stack : array-like, (Z, Y, X) or (Z, Y, X, 3|4)
        Any real or bool dtype; may be lazy (memmap, zarr, dask): only the slices needed are
        read. A list of equal-sized 2D slices is stacked.
    model : Sam, str or PathLike
        From :func:`napari_sam.load_model`, or a model name or checkpoint path for it.
    store : path, optional
        Zarr group to cache embeddings in (float16); reused when the data, model and
        preprocessing match, resumed when incomplete. It must be a new path or a store
        written by this function: any other zarr group (for example the one the stack was
        read from) is refused with ValueError and left as it is.
    batch_size : int
        Slices per encoder call.
    contrast_limits : (float, float), optional
        Intensities mapped to black and white for every slice; default: volume-wide
        ``percentiles`` from up to 16 evenly spaced slices.
    device, precision
        See :class:`napari_sam.Predictor`.
    cache_size : int
        Embeddings kept in memory (LRU).
    compute : bool
        Compute all slices now instead of on demand.
    progress : None, bool or callable(done, total)
        When ``compute`` is True: None or False: silent; True: a ``tqdm.auto`` progress bar;
        a callable: called after each batch. Anything else: TypeError before any work.
    """
    emb = StackEmbeddings(
        stack,
        model,
        store=store,
        batch_size=batch_size,
        contrast_limits=contrast_limits,
        percentiles=percentiles,
        device=device,
        precision=precision,
        cache_size=cache_size,
    )
    if compute:
        emb.compute(progress=progress)
    return emb
