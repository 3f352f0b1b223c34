"""Which model, device and precision an annotation session uses: choices, loading,
caching, the demo notice.

Models are loaded once per (name or path, device, precision) and kept; predictors are shared
per loaded model so that the encoder-call counters (and the GPU memory) are shared too.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEMO_LABEL",
    "DEMO_NOTICE",
    "ModelCache",
    "ModelChoice",
    "checkpoint_family",
    "choice_identity",
    "default_choice",
    "demo_weights",
    "file_choice",
    "file_choice_job",
    "PRECISION_CHOICES",
    "device_choices",
    "device_line",
    "model_choices",
    "precision_key",
    "registry_family",
    "recommended_thresholds",
]

DEMO_NOTICE = (
    "Demo model in use: a small model trained only on synthetic images, for trying the tools. "
    "For real data pick a real SAM model in 'Model' (vit_b; vit_b_lm for light microscopy; "
    "vit_b_em_organelles for EM): it is downloaded once. Offline, run "
    "'napari-sam models where vit_b' to see where to put the file, or pick a checkpoint file."
)

#: Short form for the widget (the full notice is its tooltip).
DEMO_LABEL = (
    "Demo model in use (trained on synthetic images only). For real data pick vit_b, "
    "vit_b_lm or vit_b_em_organelles in 'Model' (downloaded once) or a checkpoint file."
)


@dataclass(frozen=True)
class ModelChoice:
    """A registry name or a checkpoint path, and how to show it."""

    key: str  # registry name, or the path of a checkpoint file
    label: str
    is_file: bool = False
    cached: bool = True
    is_demo: bool = False
    family: str = "sam1"  # "sam1" (SAM, MobileSAM, micro-sam) or "sam2" (SAM 2.1)
    #: of a checkpoint file (:func:`demo_weights`): "bundled" (the demo model's own file),
    #: "copy" (another file holding its weights) or ""
    demo_weights: str = ""


def model_choices() -> list[ModelChoice]:
    """Registry models with their cached state (the demo model first)."""
    from napari_sam.models.registry import DEMO_NAME, list_models

    out = []
    for rec in list_models():
        name = rec["name"]
        demo = name == DEMO_NAME
        if demo:
            label = "demo (bundled, synthetic data only)"
            if not rec["cached"]:
                label = "demo (not installed)"
        else:
            size = f", {rec['size'] / 1e6:.0f} MB" if rec.get("size") else ""
            label = f"{name} ({'cached' if rec['cached'] else 'download' + size})"
        out.append(ModelChoice(name, label, cached=bool(rec["cached"]), is_demo=demo,
                               family=registry_family(rec)))
    out.sort(key=lambda c: not c.is_demo)
    return out


def registry_family(record: dict) -> str:
    """``"sam2"`` for a registry record of a SAM 2 model (its ``family``, else its name or
    architecture naming SAM 2 / Hiera), ``"sam1"`` otherwise."""
    family = record.get("family")
    if family in ("sam1", "sam2"):
        return family
    words = f"{record.get('name', '')} {record.get('architecture', '')}".lower()
    return "sam2" if ("sam2" in words or "hiera" in words) else "sam1"


def _read_tensors(path: Path):
    """What ``torch.load(path, weights_only=True)`` gives, tensors memory-mapped where the
    file format allows it (not read); raises what torch raises for a file it cannot load."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old (non-zip) file: no memory map
        return torch.load(path, map_location="cpu", weights_only=True)


def _family_of(obj) -> str:
    from napari_sam.models.sam2.checkpoint import is_sam2_state_dict

    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    return "sam2" if isinstance(obj, dict) and is_sam2_state_dict(obj) else "sam1"


def checkpoint_family(path: str | os.PathLike) -> str:
    """``"sam2"`` when the checkpoint file at ``path`` holds a SAM 2 state dict (Meta's
    ``{"model": ...}`` layout or a bare one), else ``"sam1"``; a file that cannot be read
    counts as ``"sam1"`` (loading it then says what is wrong). Tensors are memory-mapped,
    not read, where the file format allows it."""
    try:
        obj = _read_tensors(Path(path))
    except Exception:  # noqa: BLE001 - loading the file reports the problem
        return "sam1"
    return _family_of(obj)


def file_choice(path: str | os.PathLike) -> ModelChoice:
    """The choice of a checkpoint file, its family read from the file.

    Raises
    ------
    UserError
        The file is missing or cannot be read as a PyTorch checkpoint (a truncated download,
        another format): said when the file is picked, not at the first click. Its tensors
        are memory-mapped, not read, so a large checkpoint is checked in a moment.
    """
    from .errors import UserError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"Checkpoint file not found: {p}. Pick an existing .pt/.pth file.",
                        "error")
    if p.suffix.lower() == ".json":
        raise UserError(f"{p.name} is the metadata file of a checkpoint, not a model: pick "
                        f"the checkpoint beside it ({p.with_suffix('.pt').name}).", "error")
    try:
        obj = _read_tensors(p)
    except Exception as err:  # noqa: BLE001 - named in the message, with what to do
        text = str(err)
        if "Unsupported global" in text or "Unsupported class" in text:
            # a checkpoint with Python objects besides tensors: loading says so (not a file of
            # another format, which fails with "Unsupported operand" and the like)
            return ModelChoice(str(p), f"file: {p.name}", is_file=True)
        if isinstance(err, OSError):  # the file is fine, maybe: it could not be read
            raise UserError(
                f"Could not read {p.name} ({err.strerror or type(err).__name__}): check that "
                f"you may read {p} (its permissions, the drive it is on), or pick another "
                "file.", "error") from None
        raise UserError(
            f"{p.name} cannot be read as a PyTorch checkpoint ({type(err).__name__}): a "
            "truncated download or another file format? Download it again (Meta's "
            "sam2.1_hiera_*.pt, SAM's sam_vit_*.pth) or pick another file.", "error") from None
    if isinstance(obj, dict) and {"schedule", "trainer", "loop"} <= set(obj):
        model = p.name[: -len(".train-state.pt")] + ".pt" if p.name.endswith(
            ".train-state.pt") else "the .pt the same training wrote"
        raise UserError(f"{p.name} is the training state of a resumable run (what `napari-sam "
                        f"train --resume` continues from), not a model: pick {model}.",
                        "error")
    demo = demo_weights(p)
    label = f"file: {p.name}" + DEMO_FILE_WORDS.get(demo, "")
    return ModelChoice(str(p), label, is_file=True, family=_family_of(obj), demo_weights=demo)


def file_choice_job(path: str | os.PathLike):
    """A job (a generator, :mod:`napari_sam.annotate.jobs`) reading the checkpoint file
    ``path`` picked in 'Model': returns ``(choice, thresholds)``, its :func:`file_choice` and
    :func:`recommended_thresholds`. The dock runs it in a worker thread: reading a checkpoint
    imports torch and opens the file (a 375 MB SAM file froze napari for seconds on the UI
    thread); raises :func:`file_choice`'s :class:`~napari_sam.annotate.errors.UserError`."""
    yield f"Reading the checkpoint {Path(path).name} ..."
    choice = file_choice(path)
    return choice, recommended_thresholds(choice)


#: What the label of a checkpoint file picked in 'Model' adds for the demo model's weights
#: (:func:`demo_weights`): a copy of them is the file the user picked, not the bundled model
DEMO_FILE_WORDS = {"bundled": " (the bundled demo model)", "copy": " (the demo model's weights)"}


def demo_weights(path: str | os.PathLike) -> str:
    """Whether the checkpoint file ``path`` holds the bundled demo model's weights:
    ``"bundled"`` for the bundled file itself, ``"copy"`` for another file of the same bytes
    (a copy the user made: its sha256 is computed only where the sizes match, and, as
    :attr:`napari_sam.models.sam.Sam.is_demo` does, it loads as the demo model), ``""`` for
    any other file (also where the demo model is not installed)."""
    from napari_sam.models.download import file_digest
    from napari_sam.models.registry import DEMO_NAME, where

    p = Path(path)
    try:
        bundled = where(DEMO_NAME)
        if p.resolve() == bundled.resolve():
            return "bundled"
        if p.stat().st_size != bundled.stat().st_size:
            return ""
        return "copy" if file_digest(p) == file_digest(bundled) else ""
    except OSError:
        return ""


def recommended_thresholds(choice: ModelChoice) -> dict[str, float]:
    """Segment-everything thresholds for ``choice`` without loading it: SAM's defaults
    updated with the ``"automatic"`` entry of the settings it loads with. A checkpoint file:
    :func:`~napari_sam.models.registry.declared_settings` (its own entries, a metadata file
    that describes it over them, the demo model's for a checkpoint of the demo's
    architecture without one), a metadata file compared by size only (no hashing here:
    loading checks its sha256); the bundled demo model: its metadata file. A file that
    cannot be loaded gives SAM's defaults (loading it says why)."""
    from napari_sam.automatic import recommended_thresholds as for_model
    from napari_sam.models.checkpoint import with_metadata_file
    from napari_sam.models.registry import REGISTRY, automatic_defaults, declared_settings, where

    try:
        if choice.is_file:  # picked: its file was read already (file_choice), torch is here
            settings = declared_settings(choice.key, hash_file=False)
        elif choice.key in REGISTRY and REGISTRY[choice.key].packaged:
            settings = with_metadata_file({}, where(choice.key), hash_file=False)
        else:
            settings = {}  # downloadable SAM weights: no checkpoint metadata of ours
        return for_model(automatic_defaults(settings, choice.key))
    except (OSError, ValueError):
        return for_model({})


def default_choice(choices: list[ModelChoice]) -> ModelChoice | None:
    """The first cached real model, else the demo model (the demo is the default only when
    no other weights are present)."""
    real = [c for c in choices if c.cached and not c.is_demo]
    if real:
        return real[0]
    demo = [c for c in choices if c.is_demo]
    return demo[0] if demo else (choices[0] if choices else None)


def device_choices(import_torch: bool = True) -> list[str]:
    """"auto" and the devices available here. Without ``import_torch``, while torch is not
    imported yet: "auto" and "cpu" (importing torch took 2-5 s of the dock's opening, on the
    main thread; the dock asks again once torch is imported)."""
    torch = sys.modules.get("torch")
    if torch is None and not import_torch:
        return ["auto", "cpu"]
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


#: The GUI's "Precision" box: ``"auto"`` is :func:`napari_sam.device.resolve_precision`'s choice.
PRECISION_CHOICES = ("auto", "fp32", "bf16")


def precision_key(device, precision: str = "auto") -> str:
    """What ``precision`` resolves to on ``device`` (``"fp32"``, ``"bf16"`` or ``"fp16"``): the
    precision part of cache keys, so that ``"auto"`` and the precision it picks share models
    and embeddings. Raises ``ValueError`` for a bad device or precision."""
    from napari_sam.device import precision_name, resolve_device, resolve_precision

    return precision_name(resolve_precision(precision, resolve_device(device)))


def device_line(device, precision: str = "auto") -> str:
    """The read-only line under the GUI's Device box: :func:`napari_sam.device.describe`, or
    what is wrong with the choice."""
    from napari_sam.device import describe

    try:
        return describe(device, precision)
    except ValueError as err:
        return f"not usable: {err}"


def choice_identity(choice: ModelChoice):
    """What tells a model choice's weights apart: the registry name, or a checkpoint file's
    path with its size and modification time, so that a file written again (a model retrained
    into the same path) is loaded again and its embeddings computed again, not served from
    memory."""
    if not choice.is_file:
        return choice.key
    try:
        st = Path(choice.key).stat()
    except OSError:  # gone: loading it says so
        return (choice.key, None)
    return (choice.key, st.st_size, st.st_mtime_ns)


class ModelCache:
    """Loaded models and their predictors, keyed by (model key, device, precision)."""

    def __init__(self):
        self._models: dict[tuple, object] = {}
        self._predictors: dict[tuple, object] = {}

    @staticmethod
    def _key(choice: ModelChoice, device, precision: str = "auto") -> tuple:
        """(:func:`choice_identity`, device, precision)."""
        from napari_sam.device import resolve_device

        return (choice_identity(choice), str(resolve_device(device)),
                precision_key(device, precision))

    def get(self, choice: ModelChoice, device, precision: str = "auto"):
        """The predictor for a model already loaded, else None (raises for a bad device or
        precision once a model is loaded: before, nothing is resolved, so that the dock
        opens without importing torch)."""
        if not self._predictors:
            return None
        return self._predictors.get(self._key(choice, device, precision))

    def load(self, choice: ModelChoice, device, precision: str = "auto"):
        """Load (maybe download) a model, SAM 1 or SAM 2, and make its predictor; safe to
        call off the main thread (nothing is stored: pass the result to :meth:`put`)."""
        from napari_sam.models.registry import load_model
        from napari_sam.predictor import Predictor

        key = self._key(choice, device, precision)  # the file as it is before reading it
        target = Path(choice.key) if choice.is_file else choice.key
        model = load_model(target, device=key[1])
        predictor = Predictor(model, device=key[1], precision=precision)
        predictor.cache_key = key  # put() files it here, also if the file changes meanwhile
        return predictor

    def put(self, choice: ModelChoice, device, predictor, precision: str = "auto") -> None:
        """Keep ``predictor`` (from :meth:`load`) for ``choice``; models loaded from an
        earlier version of the same checkpoint file are dropped (a file retrained in place
        would otherwise keep every version in memory)."""
        key = getattr(predictor, "cache_key", None) or self._key(choice, device, precision)
        ident = key[0]
        if isinstance(ident, tuple):
            for old in [k for k in self._predictors
                        if isinstance(k[0], tuple) and k[0][0] == ident[0] and k[0] != ident]:
                self._predictors.pop(old, None)
                self._models.pop(old, None)
        self._predictors[key] = predictor
        self._models[key] = predictor.model
