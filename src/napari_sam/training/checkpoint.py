"""What training writes: the model checkpoint, its checkpoint metadata and the training state.

* The **checkpoint** ``model.pt`` is ``model.state_dict()`` in Meta's SAM key layout
  (float32, CPU): what :func:`napari_sam.load_model` reads, unchanged since format 1.
* Its **checkpoint metadata** ``model.json`` (on disk the JSON file beside the checkpoint)
  holds the architecture, the training record and the checkpoint's sha256.
* The **training state** ``model.train-state.pt`` (written only by resumable runs) holds
  what a run needs to continue exactly where it stopped: the current (last, not best) model
  weights, the optimizer moments, the step counter and schedule length, every random
  generator (numpy, torch CPU/CUDA, the prompt generator, Python's ``random``), the data
  order of the epoch in progress and the loop's bookkeeping. It is read with
  ``torch.load(weights_only=True)``: plain containers, numbers, strings and tensors only.

Every file is written to a temporary name and renamed, so an interrupted save leaves the
previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["FORMAT_VERSION", "STATE_FORMAT", "checkpoint_metadata_path", "json_default",
           "load_training_state", "save_checkpoint", "save_training_state",
           "training_state_path"]

#: Version of the checkpoint metadata written by :func:`save_checkpoint`.
FORMAT_VERSION = 1
#: ``format`` key of a training state file, and its version.
STATE_FORMAT = ("napari-sam-training-state", 1)


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, rename it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def checkpoint_metadata_path(path: str | os.PathLike) -> Path:
    """``model.pt`` -> ``model.json`` (what :func:`napari_sam.load_model` reads)."""
    return Path(path).with_suffix(".json")


def is_training_metadata(path: str | os.PathLike) -> bool:
    """Whether ``path`` is checkpoint metadata written by a training run of ours (a JSON
    object with the architecture, the checkpoint's sha256 and ``trained_by``)."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(meta, dict) and str(meta.get("trained_by", "")).startswith("napari_sam")
            and "sha256" in meta and "architecture" in meta)


def not_ours_problem(out: str | os.PathLike, flag: str = "--overwrite") -> str | None:
    """Why training into ``out`` must not replace what is there even with ``flag``
    (``--overwrite``, ``overwrite=True``), or None: an ``out`` checkpoint or its metadata
    ``FILE.json`` that no training run of ours wrote (no training metadata beside it). Such
    a file (a downloaded checkpoint, the user's notes) is never replaced."""
    out = Path(out)
    meta = checkpoint_metadata_path(out)
    if is_training_metadata(meta):
        return None
    theirs = [p for p in (out, meta) if p.exists()]
    if not theirs:
        return None
    return (f"{theirs[0]} exists and was not written by napari-sam train ({meta.name} is not "
            "the metadata of a training run): napari-sam never replaces it, not even with "
            f"{flag} (that replaces an earlier training run's files only); give another -o / "
            "out, or move it away yourself")


def training_state_path(path: str | os.PathLike) -> Path:
    """``model.pt`` -> ``model.train-state.pt`` (what a resumed run reads)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.train-state.pt")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_state_dict(model) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` on the CPU, floating tensors as float32 (detached copies)."""
    return {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
            for k, v in model.state_dict().items()}


def save_checkpoint(model, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``model.state_dict()`` (Meta's SAM key layout, float32, CPU) to ``path`` and
    ``metadata`` plus the architecture and the file's sha256 to the checkpoint metadata
    (``path`` with ``.json``). Both are written to temporary names and renamed, so an
    interrupted save leaves the previous files intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = cpu_state_dict(model)
    atomic_write_bytes(path, lambda fh: torch.save(sd, fh))
    from napari_sam import __version__
    from napari_sam.models.build import architecture_name

    meta = {
        "format_version": FORMAT_VERSION,
        "napari_sam_version": __version__,
        "architecture": architecture_name(model.config),
        "config": model.config.to_dict(),
        "input_size": int(model.img_size),
        # the preprocessing it was validated with (a model fine-tuned from the demo model)
        **({"input_smoothing": {"sigma": float(model.input_smoothing)}}
           if float(getattr(model, "input_smoothing", 0.0)) > 0 else {}),
        **automatic_entry(model),
        **({"mask_boundary": model.mask_boundary}  # a model trained from the demo keeps it
           if getattr(model, "mask_boundary", "threshold") != "threshold" else {}),
        **metadata,
        "sha256": _sha256(path),
        "size": path.stat().st_size,
    }
    text = json.dumps(meta, indent=1, default=json_default)
    atomic_write_bytes(checkpoint_metadata_path(path), lambda fh: fh.write(text.encode()))
    return path


def automatic_entry(model) -> dict[str, Any]:
    """The segment-everything thresholds the model's base recommended (its
    ``automatic_defaults``, read by :func:`napari_sam.load_model` from the base checkpoint's
    metadata), as the checkpoint metadata's ``"automatic"`` entry with a note; empty for a
    model without a recommendation (SAM's thresholds then apply, as for its base)."""
    rec = getattr(model, "automatic_defaults", None) or {}
    if not rec:
        return {}
    return {"automatic": {k: float(v) for k, v in rec.items()},
            "automatic_note": "the segment-everything thresholds recommended for the base "
                              "model, carried over by training (not tuned again for these "
                              "weights)"}


def json_default(o):
    """``json.dumps`` fallback: numpy scalars and arrays, objects with ``to_dict``, else str."""
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a training state (see the module docstring) atomically to ``path``.

    ``state`` holds only what ``torch.load(weights_only=True)`` reads back: dicts, lists,
    tuples, str, int, float, bool, None and tensors.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": STATE_FORMAT[0], "format_version": STATE_FORMAT[1], **state}
    atomic_write_bytes(path, lambda fh: torch.save(record, fh))
    return path


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training state written by :func:`save_training_state` (tensors on the CPU).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not a napari-sam training state, or of a newer format.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path} is not a readable napari-sam training state: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT[0]:
        raise ValueError(f"{path} is not a napari-sam training state")
    if int(state.get("format_version", 0)) > STATE_FORMAT[1]:
        raise ValueError(f"{path} was written by a newer napari-sam (training state format "
                         f"{state['format_version']}); update napari-sam to resume it")
    return state
