"""The model cache of a batch process: each (model, device) is loaded once per process and
reused by every job (and every task a dask worker runs)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

_MODELS: dict[tuple[str, str], Any] = {}


#: (size, mtime_ns) of each cached model's checkpoint file when it was loaded: a file
#: replaced since (other weights at the same path) is loaded again.
_STAMPS: dict[tuple[str, str], tuple[int, int] | None] = {}


_MODEL_LOADS: list[tuple[str, str]] = []


def model_key(spec: str) -> str:
    """Registry names stay names; paths become absolute (workers may have another cwd)."""
    from napari_sam.models.registry import REGISTRY

    if spec in REGISTRY:
        return spec
    return str(Path(spec).expanduser().resolve())


def model_file_id(key: str) -> str | None:
    """The model id :func:`~napari_sam.models.registry.load_model` gives the checkpoint file
    ``key`` (a :func:`model_key` path): ``"file:<sha256[:12]>"``; None for registry names and
    files that are not there.

    The digest is remembered per process with the file's size and modification time
    (:func:`~napari_sam.models.download.file_digest`), and loading the model computes it
    anyway: asking again costs a ``stat``."""
    from napari_sam.models.download import file_model_id

    if key in _registry():
        return None
    try:
        return file_model_id(key)
    except OSError:
        return None


def packaged_model_id(key: str) -> str | None:
    """The model id (without its ``+smooth`` part) :func:`~napari_sam.models.registry.load_model`
    gives the registry model ``key`` when it ships with the package (the bundled demo model):
    ``"<name>:<sha256[:12]>"`` of its file, which another version of napari-sam-stacks
    replaces. None for other keys and a packaged file that is not there. The digest is
    remembered per process like :func:`model_file_id`'s."""
    from napari_sam.models.download import file_digest
    from napari_sam.models.registry import get_spec, where

    if key not in _registry() or not get_spec(key).packaged:
        return None
    try:
        return f"{key}:{file_digest(where(key))[:12]}"
    except OSError:
        return None


def get_model(spec: str, device: str = "auto"):
    """The model ``spec`` on ``device``, loaded once per process and then reused.

    The cache is a module-level dict keyed by (model, device): every task a dask worker
    process runs shares it; a checkpoint file whose size or modification time changed since
    it was loaded is loaded again. Returns ``(model, loaded_now)``.
    """
    from napari_sam.device import resolve_device

    dev = str(resolve_device(device))
    key = (model_key(spec), dev)
    model = _MODELS.get(key)
    stamp = _file_stamp(key[0])
    if model is not None and _STAMPS.get(key) == stamp:
        return model, False
    from napari_sam.models.registry import load_model

    model = _load_quietly(load_model, key[0] if spec not in _registry() else spec, dev)
    _MODELS[key] = model
    _STAMPS[key] = stamp
    _MODEL_LOADS.append(key)
    return model, True


def _file_stamp(key: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of the checkpoint file ``key``; None for registry names (and files
    that are not there)."""
    if key in _registry():
        return None
    try:
        st = os.stat(key)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _registry():
    from napari_sam.models.registry import REGISTRY

    return REGISTRY


class DropDemoWarning(logging.Filter):
    """Drops :func:`~napari_sam.models.registry.load_model`'s demo-model log line, where the
    command line prints its own note (once, and not with ``--quiet``); ``load_notes``: also
    the lines it prints itself from the model's ``load_notes`` (a metadata file beside a
    checkpoint not used: it came twice, once raw from Python's last-resort log handler)."""

    def __init__(self, load_notes: bool = False):
        super().__init__()
        self.load_notes = load_notes

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.load_notes and "is not used: it describes another checkpoint" in text:
            return False
        return "bundled demo model" not in text


def _load_quietly(load_model, spec, device):
    """load_model without its demo-model log line (the CLI prints its own note once)."""
    reg_logger = logging.getLogger("napari_sam.models.registry")
    filt = DropDemoWarning()
    reg_logger.addFilter(filt)
    try:
        return load_model(spec if spec in _registry() else Path(spec), device=device,
                          progress=False)
    finally:
        reg_logger.removeFilter(filt)


def model_cache_info() -> dict:
    """``{"cached": [(model, device), ...], "loads": [...], "pid": pid}`` of this process."""
    return {"cached": list(_MODELS), "loads": list(_MODEL_LOADS), "pid": os.getpid()}
