"""Reading checkpoint files into plain SAM state_dicts plus their metadata.

Official SAM checkpoints (a bare state_dict), micro-sam's (``{"model_state": ...,
"optimizer": ...}``), other wrappers (``{"model": ...}``, ``{"state_dict": ...}``, key
prefixes such as ``module.``) and our own (a state_dict with a ``"config"`` entry, or a JSON
metadata file next to it) all come out with the keys of Meta's ``Sam``. Files are loaded with
``weights_only=True``: nothing in a checkpoint is ever executed.

A metadata file that records a checkpoint's sha256 (every one our trainer writes) is used
only with that checkpoint (:func:`metadata_describes`): a checkpoint downloaded or copied
over a training run's ``FILE.pt`` is not run with the settings chosen for another model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported to read a checkpoint: listing models needs none
    from torch import Tensor

__all__ = ["checkpoint_outline", "find_checkpoint_metadata", "metadata_describes",
           "read_checkpoint", "stale_metadata_note", "with_metadata_file"]


_WRAPPER_KEYS = ("model_state", "model_state_dict", "state_dict", "model")
_PREFIXES = ("module.", "sam.", "model.", "_orig_mod.")


def _is_state_dict(obj: Any) -> bool:
    from torch import Tensor

    return (
        isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())
    )


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from torch import Tensor

    metadata: dict[str, Any] = {}
    for _ in range(4):
        if _is_state_dict(obj):
            break
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path} does not contain a state_dict (found {type(obj).__name__})")
        inner = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            # a state_dict with some non-tensor entries (e.g. our own "config" next to weights)
            tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
            if not tensors and {"schedule", "trainer", "loop"} <= set(obj):
                raise ValueError(
                    f"{path} is the training state of a resumable run (what `napari-sam "
                    "train --resume` continues from), not a model: use the .pt the same "
                    "training wrote")
            if not tensors:
                raise ValueError(
                    f"{path} does not contain a model state_dict (keys: {list(obj)[:8]})"
                )
            for k, v in obj.items():
                if not isinstance(v, Tensor):
                    metadata.setdefault(k, v)
            obj = tensors
            break
        for k, v in obj.items():
            if k != inner and not k.startswith("optimizer") and not isinstance(v, Tensor):
                metadata.setdefault(k, v)
        obj = obj[inner]
    sd = dict(obj)
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p) :]: v for k, v in sd.items()}
                changed = True
    return sd, metadata


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint file into a plain SAM state_dict and metadata.

    Accepts official SAM checkpoints, micro-sam's ``{"model_state": ..., "optimizer": ...}``,
    ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers and the key prefixes ``module.``,
    ``sam.``, ``model.``. Loaded with ``weights_only=True`` onto the CPU.

    Metadata holds the wrapper's other small entries; ``metadata["config"]`` is a
    :class:`SamConfig` when the checkpoint or its JSON metadata file (``<path>.json`` or
    ``<stem>.json`` with a "config" entry, see :func:`find_checkpoint_metadata`) provides
    one; that file's other entries are merged in too, and ``metadata["sidecar"]`` is its
    path. A metadata file that records the sha256 of another checkpoint (see
    :func:`metadata_describes`) is not used: ``metadata["ignored_sidecar"]`` is then its
    path, and the caller says so (:func:`stale_metadata_note`).

    Raises
    ------
    FileNotFoundError
        The file does not exist (the message names it).
    ValueError
        The file is not a PyTorch checkpoint, is truncated, or holds no state_dict; or its
        metadata file cannot be read or holds no JSON object (:func:`with_metadata_file`).
    """
    import torch

    from .config import SamConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (zip, pickle, EOF, RuntimeError, ...)
        # ``from None``, and never PyTorch's own text about weights_only: it advises
        # re-running torch.load with weights_only=False, which runs any code in the file.
        raise ValueError(_unreadable_message(path, e)) from None
    sd, metadata = _unwrap(obj, path)
    metadata = with_metadata_file(metadata, path)
    if "config" in metadata and isinstance(metadata["config"], Mapping):
        metadata["config"] = SamConfig.from_dict(metadata["config"])
    return sd, metadata


_JSON_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "true or false", type(None): "null"}


def with_metadata_file(own: Mapping[str, Any], path: str | Path, *,
                       hash_file: bool = True) -> dict[str, Any]:
    """The metadata a checkpoint loads with: its own entries ``own`` (the file's, as
    :func:`checkpoint_outline` returns them) with those of the metadata file beside it
    (:func:`find_checkpoint_metadata`) put over them, when that file describes the checkpoint
    (:func:`metadata_describes`; ``hash_file`` is passed on): ``"sidecar"`` is then its path.
    A metadata file of another checkpoint is not used: ``"ignored_sidecar"`` is its path.
    :func:`read_checkpoint` and what is told of a checkpoint without loading it
    (:func:`napari_sam.models.registry.declared_settings`) both follow this rule.

    Raises
    ------
    ValueError
        The metadata file cannot be read, is not JSON, or holds no JSON object (a list...):
        naming it and what to do.
    """
    path = Path(path)
    metadata = dict(own)
    metadata_file = find_checkpoint_metadata(path)
    if metadata_file is None:
        return metadata
    try:
        stored = json.loads(metadata_file.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read metadata sidecar {metadata_file}: {e}") from e
    if not isinstance(stored, Mapping):
        kind = _JSON_KINDS.get(type(stored), type(stored).__name__)
        raise ValueError(
            f"the metadata file {metadata_file} beside {path.name} holds {kind}, not a JSON "
            "object of the checkpoint's settings (such as {\"config\": ..., \"automatic\": "
            f"...}}): correct it, or move it away to load {path.name} without it")
    if not metadata_describes(stored, path, hash_file=hash_file):
        metadata["ignored_sidecar"] = str(metadata_file)
    else:
        metadata.update(stored)
        metadata["sidecar"] = str(metadata_file)  # key kept: part of the returned record
    return metadata


def checkpoint_outline(path: str | Path) -> tuple[str, dict[str, Any]]:
    """The encoder kind of the checkpoint file ``path`` (``"vit"``, ``"cnn"``, ``"tiny_vit"``,
    or ``"sam2"`` for a SAM 2 model) and the metadata entries the file holds itself (as
    :func:`read_checkpoint` returns them before a metadata file beside it is merged in), read
    without its weights: ``torch.load(mmap=True)`` maps them and reads the file's structure
    only (a file of torch's older format, which cannot be mapped, is read whole). The kind
    comes from the file's own ``"config"`` entry, else from the tensors' names and shapes,
    as loading it takes it when no metadata file gives a config.

    Raises
    ------
    ValueError
        The file is not a readable checkpoint or not a SAM model's.
    """
    import torch

    from .config import SamConfig, config_from_state_dict
    from .sam2.checkpoint import is_sam2_state_dict

    path = Path(path)
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not the zip format: mmap cannot map it
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (as read_checkpoint: zip, pickle, EOF, ...)
        raise ValueError(_unreadable_message(path, e)) from None
    sd, metadata = _unwrap(obj, path)
    if is_sam2_state_dict(sd):
        return "sam2", metadata
    config = metadata.get("config")
    if isinstance(config, Mapping):
        return SamConfig.from_dict(config).encoder, metadata
    return config_from_state_dict(sd).encoder, metadata


def _unreadable_message(path: Path, err: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, without PyTorch's advice to load
    with ``weights_only=False`` (that would execute whatever the file contains)."""
    if path.suffix.lower() == ".json":  # the metadata beside a checkpoint, picked instead
        return (f"{path} is the metadata file of a checkpoint, not a model: give the "
                f"checkpoint beside it ({path.with_suffix('.pt').name}).")
    text = str(err)
    found = re.search(r"GLOBAL\s+([\w.]+)", text)
    if found or "Unsupported class" in text:
        what = f" (it references {found.group(1)})" if found else ""
        return (
            f"{path} holds Python objects besides tensors{what}, so it is not loaded: "
            "napari-sam loads checkpoints with weights_only=True and never runs code from a "
            "file. If you made it, save only the weights, "
            "torch.save(model.state_dict(), path), and load that file."
        )
    inner = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n|$)", text)
    first = inner.group(1) if inner else (text.strip().splitlines() or [""])[0].split(". ")[0]
    if "weights_only" in first or "arbitrary code" in first or "trust" in first:
        first = ""
    return (
        f"{path} is not a readable PyTorch checkpoint (truncated download or another file "
        f"format?): {type(err).__name__}{': ' + first[:200] if first else ''}. Download it "
        "again or check that it is a .pt/.pth file written by torch.save."
    )


def find_checkpoint_metadata(path: str | Path) -> Path | None:
    """The JSON metadata file of a checkpoint: ``<path>.json``, else ``<stem>.json``, else None."""
    path = Path(path)
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file() and candidate != path:
            return candidate
    return None


def metadata_describes(stored: Mapping, path: str | Path, *, hash_file: bool = True) -> bool:
    """Whether the checkpoint metadata ``stored`` (the JSON object of the metadata file beside
    the checkpoint ``path``) describes that checkpoint file.

    Our trainer records the sha256 of the checkpoint it saved (``"sha256"``) and, while a save
    is under way, that of the checkpoint it replaces (``"replaces_sha256"``): the metadata
    describes ``path`` when its sha256 is one of them. Metadata that records no sha256 (written
    by hand, or by another tool) cannot tell and is taken to describe it.

    Parameters
    ----------
    stored : Mapping
        The metadata file's JSON object.
    path : str or Path
        The checkpoint file.
    hash_file : bool
        False: compare only the file's size with the recorded ``"size"`` (no hashing; a
        mismatch found this way is certain, a match is not a proof).

    Returns
    -------
    bool
        False when ``stored`` records the sha256 of another file. The digest is
        :func:`~napari_sam.models.download.file_digest`'s, remembered per size and
        modification time: loading a checkpoint hashes it once (also for its model id).

    Raises
    ------
    OSError
        ``path`` cannot be read (only where a sha256 is recorded).
    """
    from .download import file_digest

    recorded = {str(stored[k]).lower() for k in ("sha256", "replaces_sha256")
                if isinstance(stored.get(k), str)}
    if not recorded:
        return True
    size = stored.get("size")
    if ("replaces_sha256" not in stored and isinstance(size, int)
            and Path(path).stat().st_size != size):
        return False
    return not hash_file or file_digest(path) in recorded


def stale_metadata_note(path: str | Path, metadata_file: str | Path, instead: str = "") -> str:
    """What loading the checkpoint ``path`` says of the metadata file beside it that describes
    another checkpoint (:func:`metadata_describes`), and what to do; ``instead``: where its
    settings come from (default: its own, SAM's)."""
    instead = instead or (f"{Path(path).name} runs with its own settings, not with that "
                          "file's thresholds, input smoothing and mask boundary.")
    return (f"{metadata_file} is not used: it describes another checkpoint than {path} (its "
            "sha256 differs: a checkpoint downloaded or copied over a training run's file?); "
            f"{instead} Move {Path(metadata_file).name} away (keep it with the checkpoint it "
            "was written for).")
