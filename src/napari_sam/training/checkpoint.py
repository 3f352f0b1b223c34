"""What training writes: the model checkpoint, its checkpoint metadata and the training state.

* The **checkpoint** ``model.pt`` is ``model.state_dict()`` in Meta's SAM key layout
  (float32, CPU): what :func:`napari_sam.load_model` reads, unchanged since format 1.
* Its **checkpoint metadata** ``model.json`` (on disk the JSON file beside the checkpoint)
  holds the architecture, the training record and the checkpoint's sha256: it vouches for
  that checkpoint only (:func:`vouches_for`; a checkpoint it does not describe is not a
  training run's, :func:`not_ours_problem`).
* The **training state** ``model.train-state.pt`` (written only by resumable runs) holds
  what a run needs to continue exactly where it stopped: the current (last, not best) model
  weights, the optimizer moments, the step counter and schedule length, every random
  generator (numpy, torch CPU/CUDA, the prompt generator, Python's ``random``), the data
  order of the epoch in progress and the loop's bookkeeping. It is read with
  ``torch.load(weights_only=True)``: plain containers, numbers, strings and tensors only.

Every file is written to a temporary name (:func:`temporary_path`) and renamed, so an
interrupted save leaves the previous file intact; the metadata is renamed before its
checkpoint (:func:`save_checkpoint`). The writing itself is :mod:`napari_sam.io.writers`'
(:func:`~napari_sam.io.writers.write_atomic`, :func:`~napari_sam.io.writers.write_synced`);
the temporary names, which tell whose save left one, and the rules that remove them
(:func:`remove_dead_temporaries`, :func:`finish_interrupted_save`) are this module's.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_sam.io.dead_temporaries import (  # noqa: F401  (host_tag: of this module before)
    FOREIGN_TEMPORARY_AGE,
    host_tag,
    remove_dead,
    tagged_path,
)
from napari_sam.io.write_errors import naming_output
from napari_sam.io.writers import write_atomic, write_synced

__all__ = ["FORMAT_VERSION", "STATE_FORMAT", "checkpoint_metadata_path",
           "finish_interrupted_save", "json_default", "load_training_state",
           "not_ours_problem", "read_training_metadata", "remove_dead_temporaries",
           "save_checkpoint", "save_training_state", "training_state_path", "vouches_for"]

#: Version of the checkpoint metadata written by :func:`save_checkpoint`.
FORMAT_VERSION = 1
#: ``format`` key of a training state file, and its version.
STATE_FORMAT = ("napari-sam-training-state", 1)


def temporary_path(path: Path) -> Path:
    """The temporary name a file is written to beside ``path`` before it is renamed:
    ``.NAME.tmp-HOST-PID-NS`` (:func:`~napari_sam.io.dead_temporaries.host_tag`, the writing
    process's id and PID namespace: :func:`~napari_sam.io.dead_temporaries.tagged_path`)."""
    return tagged_path(path, "tmp")


def checkpoint_metadata_path(path: str | os.PathLike) -> Path:
    """``model.pt`` -> ``model.json`` (what :func:`napari_sam.load_model` reads)."""
    return Path(path).with_suffix(".json")


def read_training_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint metadata at ``path`` when a training run of ours wrote it (a JSON
    object with the architecture, the checkpoint's sha256 and ``trained_by``), else None."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (isinstance(meta, dict) and str(meta.get("trained_by", "")).startswith("napari_sam")
            and "sha256" in meta and "architecture" in meta):
        return meta
    return None


def is_training_metadata(path: str | os.PathLike) -> bool:
    """Whether ``path`` is checkpoint metadata written by a training run of ours
    (:func:`read_training_metadata`)."""
    return read_training_metadata(path) is not None


def vouches_for(meta: dict[str, Any], path: Path) -> bool:
    """Whether the training metadata ``meta`` describes the checkpoint file ``path``: its
    sha256 is the one ``meta`` was written with, or the one of the checkpoint that save
    replaced (``replaces_sha256``: :func:`save_checkpoint` renames the metadata first, so a
    save stopped between its two renames leaves the previous checkpoint beside it). Loading
    a checkpoint asks the same (:func:`napari_sam.models.checkpoint.metadata_describes`)."""
    from napari_sam.models.checkpoint import metadata_describes

    return isinstance(meta.get("sha256"), str) and metadata_describes(meta, path)


def not_ours_problem(out: str | os.PathLike, flag: str = "--overwrite") -> str | None:
    """Why training into ``out`` must not replace what is there even with ``flag``
    (``--overwrite``, ``overwrite=True``), or None: an ``out`` checkpoint or its metadata
    ``FILE.json`` that no training run of ours wrote (no training metadata beside it, or
    training metadata of another checkpoint: :func:`vouches_for`). Such a file (a downloaded
    checkpoint, the user's notes) is never replaced."""
    out = Path(out)
    meta_path = checkpoint_metadata_path(out)
    meta = read_training_metadata(meta_path)
    never = (f"napari-sam never replaces it, not even with {flag} (that replaces an earlier "
             "training run's files only); give another -o / out, or move it away yourself")
    if meta is None:
        theirs = [p for p in (out, meta_path) if p.exists()]
        if not theirs:
            return None
        return (f"{theirs[0]} exists and was not written by napari-sam train ({meta_path.name} "
                f"is not the metadata of a training run): {never}")
    if not out.is_file() or vouches_for(meta, out):
        return None
    return (f"{out} exists and was not written by napari-sam train ({meta_path.name} is the "
            f"metadata of a training run, but of another {out.name}: its sha256 differs, e.g. "
            f"a checkpoint downloaded or copied there since): {never}")


def finish_interrupted_save(out: str | os.PathLike) -> Path | None:
    """Complete a :func:`save_checkpoint` of ``out`` that was stopped (killed, out of power)
    between renaming the metadata and renaming the checkpoint: the new checkpoint, still under
    its temporary name beside ``out`` with the sha256 the metadata names, is renamed to
    ``out``, whichever host or process wrote it (its sha256 is computed after it is written
    and synced, and the metadata renamed after that: a match is a complete file). Returns
    ``out`` when it renamed it, else None (nothing to complete, or a file at ``out`` that the
    metadata does not describe: never replaced). Removes nothing
    (:func:`remove_dead_temporaries` does, once the run goes on)."""
    out = Path(out)
    done = None
    meta = read_training_metadata(checkpoint_metadata_path(out))
    if meta is not None and (not out.exists() or (
            out.is_file() and vouches_for(meta, out) and file_sha256(out) != meta["sha256"])):
        for tmp in sorted(out.parent.glob(f".{glob.escape(out.name)}.tmp-*")):
            if (tmp.is_file() and tmp.stat().st_size == meta.get("size")
                    and file_sha256(tmp) == meta["sha256"]):
                os.replace(tmp, out)
                done = out
                break
    return done


def remove_dead_temporaries(out: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (:func:`temporary_path`) of ``out``, its checkpoint
    metadata and its training state that killed saves left (a checkpoint or a training state
    can take gigabytes); returns them. Call it only once a run will go on (after every
    refusal). A file of this host is removed when its process no longer runs (all are kept on
    Windows: no harmless way to ask); one of another host (a cluster node or container
    sharing the folder) or of the older ``.NAME.tmp-PID`` form only when it was last written
    :data:`FOREIGN_TEMPORARY_AGE` seconds ago or more (its process cannot be asked)."""
    out, gone = Path(out), []
    for target in (out, checkpoint_metadata_path(out), training_state_path(out)):
        gone += remove_dead(target, "tmp")
    return gone


def training_state_path(path: str | os.PathLike) -> Path:
    """``model.pt`` -> ``model.train-state.pt`` (what a resumed run reads)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.train-state.pt")


def file_sha256(path: Path) -> str:
    """The sha256 of the file ``path`` (remembered per size and modification time:
    :func:`napari_sam.models.download.file_digest`)."""
    from napari_sam.models.download import file_digest

    return file_digest(path)


def cpu_state_dict(model) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` on the CPU, floating tensors as float32 (detached copies)."""
    return {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
            for k, v in model.state_dict().items()}


def save_checkpoint(model, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``model.state_dict()`` (Meta's SAM key layout, float32, CPU) to ``path`` and
    ``metadata`` plus the architecture and the file's sha256 to the checkpoint metadata
    (``path`` with ``.json``).

    Both are written to temporary names beside them, then the metadata is renamed into
    place, then the checkpoint: an interrupted save leaves the previous files, or the new
    metadata beside the previous checkpoint (whose sha256 it keeps as ``replaces_sha256``,
    so it still vouches for it: :func:`vouches_for`) and the new checkpoint under its
    temporary name (:func:`finish_interrupted_save` renames it). Never a checkpoint without
    the metadata that describes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_path = checkpoint_metadata_path(path)
    tmp, meta_tmp = temporary_path(path), temporary_path(meta_path)
    sd = cpu_state_dict(model)
    try:
        write_synced(tmp, lambda fh: torch.save(sd, fh), path)
        meta = {**model_entries(model), **metadata, "sha256": file_sha256(tmp),
                "size": tmp.stat().st_size}
        if path.is_file():
            meta["replaces_sha256"] = file_sha256(path)
        text = json.dumps(meta, indent=1, default=json_default)
        write_atomic(meta_path, lambda fh: fh.write(text.encode()), tmp=meta_tmp)
        _rename_checkpoint(tmp, path, meta)
    except OSError as exc:  # a rename on a read-only disk names the checkpoint
        naming_output(exc, path, tmp)
        raise
    finally:
        for t in (tmp, meta_tmp):
            if t.exists():
                t.unlink()
    return path


def _rename_checkpoint(tmp: Path, path: Path, meta: dict[str, Any]) -> None:
    """Rename the written checkpoint ``tmp`` to ``path``; a rename that finds ``tmp`` gone
    because another process's :func:`finish_interrupted_save` (a ``train`` of the same
    ``path`` started at that moment) renamed it already is done, not an error. The sha256
    of ``path`` is remembered (the next save's ``replaces_sha256`` reads no gigabytes)."""
    from napari_sam.models.download import remember_digest

    try:
        os.replace(tmp, path)
    except FileNotFoundError:
        if tmp.exists() or not path.is_file() or file_sha256(path) != meta["sha256"]:
            raise
    remember_digest(path, meta["sha256"])  # the next save's replaces_sha256: no second read


def model_entries(model) -> dict[str, Any]:
    """What the checkpoint metadata says of ``model`` itself: the format, the napari-sam
    version, the architecture and config, the input size and preprocessing, the
    segment-everything thresholds (:func:`automatic_entry`) and where masks are cut."""
    from napari_sam import __version__
    from napari_sam.models.build import architecture_name

    return {
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
    }


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
    write_atomic(path, lambda fh: torch.save(record, fh), tmp=temporary_path(path))
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
