"""Named SAM checkpoints: the registry of known models, where their files are, and loading
a model by name or path (:func:`load_model`).

Every downloadable model has a URL and a published checksum (the table is
:mod:`.catalog`). Downloads are hash-checked and atomic (:mod:`.download`). A cached file
whose size or hash is wrong (a truncated copy, a file placed by hand that is not the one we
expect) is never loaded: :func:`fetch` deletes it and downloads again.

The cache folder is ``$NAPARI_SAM_CACHE_DIR`` when that is set, otherwise the platform
cache (``pooch.os_cache("napari-sam-stacks")``, for example ``~/.cache/napari-sam-stacks``
on Linux). Offline, put the file there by hand under the name :func:`where` prints.

>>> from napari_sam.models.registry import list_models, load_model
>>> [m["name"] for m in list_models()][:3]
['demo', 'vit_b', 'vit_l']
>>> model = load_model("vit_b")          # downloads 375 MB once, then loads from the cache
>>> model = load_model("my_model.pt")    # any SAM state_dict, ours or Meta's or micro-sam's
>>> model = load_model("sam2.1_hiera_tiny.pt")  # Meta's SAM 2.1 files: a Sam2Model

SAM 2.1 checkpoints load as :class:`~napari_sam.models.sam2.Sam2Model` (``family ==
"sam2"``); functions that need a SAM 1 model check with :func:`require_family`, which names
the problem and what to use instead.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_sam.edge_threshold import BOUNDARIES

from .catalog import DEMO_NAME, MODEL_SPECS, ModelSpec
from .checkpoint import (
    checkpoint_outline,
    find_checkpoint_metadata,
    read_checkpoint,
    stale_metadata_note,
    with_metadata_file,
)
from .download import (
    CACHE_ENV,
    DOWNLOAD_TIMEOUT,
    ModelDownloadError,
    by_hand_message,
    cache_dir,
    check_cache_dir,
    download,
    file_digest,
    file_model_id,
    file_problem,
    set_aside,
    size_problem,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .sam import Sam
    from .sam2.model import Sam2Model

__all__ = [
    "CACHE_ENV",
    "DEMO_NAME",
    "DOWNLOAD_TIMEOUT",
    "ModelDownloadError",
    "ModelSpec",
    "REGISTRY",
    "as_model",
    "automatic_defaults",
    "cache_dir",
    "cache_state",
    "check",
    "declared_input_smoothing",
    "model_id_parts",
    "declared_settings",
    "fetch",
    "file_digest",
    "input_smoothing",
    "get_spec",
    "is_cached",
    "list_models",
    "load_model",
    "loading_settings",
    "mask_boundary",
    "missing_metadata_note",
    "register",
    "require_family",
    "suggest_name",
    "verify",
    "weights_dir",
    "where",
]

logger = logging.getLogger(__name__)


#: Every known model by name. Add your own with :func:`register`.
REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in MODEL_SPECS}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to :data:`REGISTRY` so :func:`fetch` and :func:`load_model` know its name.

    Raises ``ValueError`` if the name is taken, unless ``replace=True``.
    """
    if spec.name in REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def suggest_name(name: str) -> str:
    """A hint for a name that is not in the registry.

    Parameters
    ----------
    name : str
        What the user gave.

    Returns
    -------
    str
        ``" (did you mean 'vit_b'?)"`` for the closest registry names (at most two), or the
        one name that ``name`` is with a checkpoint suffix (``sam2.1_hiera_tiny.pt``:
        ``'sam2.1_hiera_tiny'``); ``""`` when no name is close.
    """
    import difflib

    names = {n.lower(): n for n in REGISTRY}
    text = str(name).lower()
    stem, dot, suffix = text.rpartition(".")
    if dot and suffix in ("pt", "pth") and stem in names:
        close = [stem]
    else:
        close = difflib.get_close_matches(text, list(names), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(names[c]) for c in close)}?)" if close else ""


def get_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` for ``name``; ``ValueError`` listing known names otherwise
    (with the closest names when there are some)."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model {name!r}{suggest_name(name)}; known models: {', '.join(REGISTRY)}"
        ) from None


# --------------------------------------------------------------------------- locations


def weights_dir() -> Path:
    """The package's ``weights/`` folder, home of the bundled demo model."""
    return Path(__file__).resolve().parent.parent / "weights"


def where(name: str) -> Path:
    """Path where model ``name`` is (or will be) stored: the file to place by hand offline."""
    spec = get_spec(name)
    if spec.packaged:
        return weights_dir() / spec.filename
    return cache_dir() / spec.filename


def _missing_demo_message(path: Path) -> str:
    return (
        f"the bundled demo model is not installed: {path} does not exist (it is made by "
        "the napari-sam-stacks trainer and ships in released packages). Use real SAM "
        "weights instead: `napari-sam models download vit_b`, then load_model('vit_b'), "
        "or pass the path of a checkpoint to load_model()."
    )


def fetch(name: str, *, progress: bool = True, url: str | None = None) -> Path:
    """Return the local path of model ``name``, downloading and verifying it if needed.

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY`.
    progress : bool
        Show a download progress bar (when ``tqdm`` is installed).
    url : str, optional
        Download from this URL instead of the registered one (a mirror, or a ``file://``
        URL); the file must still have the registered checksum.

    Returns
    -------
    Path
        ``where(name)``; the file there has the published size and checksum.

    Raises
    ------
    ValueError
        ``name`` is not registered.
    FileNotFoundError
        The bundled demo model is not installed.
    ModelDownloadError
        The download failed or the downloaded file did not match its checksum. The message
        names the URL, the path to place the file at by hand and the expected checksum.
    """
    spec = get_spec(name)
    target = where(name)
    if spec.packaged:
        if not target.is_file():
            raise FileNotFoundError(_missing_demo_message(target))
        return target
    check_cache_dir(target.parent)
    note = ""
    if target.exists() or target.is_symlink():
        problem = file_problem(target, spec)
        if problem is None:
            return target
        note = _move_aside(spec, target, problem)
        if note is None and target.is_file() and not file_problem(target, spec):
            return target  # another process fetching it at the same moment downloaded it
    try:
        download(spec, url or spec.url, target, progress)
    except ModelDownloadError as err:
        if not note:
            raise
        raise ModelDownloadError(f"{err} ({note})", summary=err.summary) from err
    return target


def _move_aside(spec: ModelSpec, target: Path, problem: str) -> str | None:
    """Rename the wrong file at ``target`` to ``<name>.bad-<stamp>`` beside it (a user may have
    placed it there: it is never deleted) and log where it went; returns that note, or None
    when the file was gone by then: another process fetching the model at the same moment
    moved it aside (was: "cannot be moved aside ... the cache folder is probably
    read-only", and that process failed)."""
    try:
        if target.is_dir():  # never move or delete a folder found under a model's file name
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
        aside = set_aside(target)
    except OSError as err:
        if isinstance(err, FileNotFoundError):  # the rename found no file to move
            return None
        raise ModelDownloadError(
            f"the cached file {target} for model {spec.name!r} is not the model's checkpoint "
            f"({problem}) and cannot be moved aside ({type(err).__name__}: {err}); the cache "
            f"folder is probably read-only. Move the file away by hand, or set {CACHE_ENV} to "
            "a folder you can write to. " + by_hand_message(spec, target),  # (none tried)
            summary=f"its cached file is wrong ({problem}) and cannot be moved aside ({err})",
        ) from None
    note = (
        f"the file that was at {target} is not model {spec.name!r}'s checkpoint ({problem}); "
        f"it was moved to {aside}, not deleted. If you placed it there by hand, check that it "
        f"is the right file and place the right one at {target}; delete {aside.name} once you "
        "no longer need it"
    )
    logger.warning("%s. Downloading model %r again.", note[0].upper() + note[1:], spec.name)
    return note


def check(name: str) -> str | None:
    """Why model ``name``'s file is not usable, or None when it is present with its published
    size and checksum: ``"not downloaded"``, ``"wrong size (expected N bytes, found M)"`` (no
    hashing then) or ``"wrong checksum (...)"``. The bundled demo model is checked against
    the ``sha256`` in its JSON metadata file when that records one."""
    spec = get_spec(name)
    path = where(name)
    if not path.is_file():
        return "not a file" if path.exists() else "not downloaded"
    if spec.packaged:
        expected = _read_metadata_file(path).get("sha256")
        actual = file_digest(path) if expected is not None else None
        if actual is None or actual == str(expected).lower():
            return None
        return f"wrong checksum (its sha256 is {actual}, expected {expected})"
    return file_problem(path, spec)


def verify(name: str) -> bool:
    """True when model ``name``'s file is present and has its published size and checksum
    (:func:`check` says why not)."""
    return check(name) is None


def is_cached(name: str) -> bool:
    """True when model ``name``'s file is present with the right size (no hashing; see verify)."""
    return cache_state(name) == "cached"


def cache_state(name: str) -> str:
    """What is at model ``name``'s path, without hashing: ``"cached"`` (a file of the right
    size), ``"not downloaded"``, ``"not a file"`` or ``"wrong size (expected N bytes, found
    M)"``."""
    spec = get_spec(name)
    path = where(name)
    if not path.exists():
        return "not downloaded"
    return ("cached" if spec.packaged and path.is_file() else size_problem(path, spec)) or "cached"


def list_models() -> list[dict[str, Any]]:
    """One record per registered model.

    Keys: ``name``, ``architecture``, ``source``, ``size`` (bytes or None),
    ``approx_size`` (about how many bytes, where ``size`` is not published), ``checksum``
    (``"sha256:<hex>"`` or ``"xxh128:<hex>"``, the published one downloads are checked
    against; None for the bundled model, checked against its metadata file), ``cached``
    (see :func:`is_cached`), ``state`` (see :func:`cache_state`: what is at ``path``, e.g.
    ``"wrong size (expected N bytes, found M)"``), ``path`` (str, see :func:`where`), ``url``
    (None for the bundled model) and ``description``.
    """
    return [
        {
            "name": spec.name,
            "architecture": spec.architecture,
            "source": spec.source,
            "size": spec.size,
            "approx_size": spec.approx_size,
            "checksum": spec.known_hash,
            "cached": is_cached(spec.name),
            "state": cache_state(spec.name),
            "path": str(where(spec.name)),
            "url": spec.url,
            "description": spec.description,
        }
        for spec in REGISTRY.values()
    ]


# --------------------------------------------------------------------------- loading


def _metadata_path(path: Path) -> Path:
    """The metadata file next to a checkpoint, as :func:`read_checkpoint` looks for it:
    ``model.pt.json`` if present, else ``model.json`` (also where none exists yet)."""
    return find_checkpoint_metadata(path) or path.with_suffix(".json")


def _read_metadata_file(path: Path) -> dict[str, Any]:
    """Metadata stored next to a checkpoint, or {} when there is none."""
    metadata_file = _metadata_path(path)
    if not metadata_file.is_file():
        return {}
    try:
        with open(metadata_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the model metadata file {metadata_file}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"the model metadata file {metadata_file} must hold a JSON object")
    return data


def _build(path: Path) -> Sam | Sam2Model:
    from .build import sam_from_state_dict
    from .sam2.checkpoint import is_sam2_state_dict, load_sam2

    state_dict, metadata = read_checkpoint(path)  # unwraps; config from the metadata
    ignored = metadata.get("ignored_sidecar")  # of another checkpoint: read_checkpoint
    notes = () if ignored is None else (stale_metadata_note(path, ignored),)
    if is_sam2_state_dict(state_dict):
        try:
            model = load_sam2(state_dict, image_size=metadata.get("image_size"))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    else:
        try:
            model = sam_from_state_dict(state_dict, config=metadata.get("config"))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        encoder = getattr(model.config, "encoder", "")
        if inherits_demo_settings(metadata, encoder):
            notes = (missing_metadata_note(path, ignored),)
        metadata = loading_settings(metadata, encoder)
        model.automatic_defaults = automatic_defaults(metadata, path)
        model.input_smoothing = input_smoothing(metadata, path)
        model.mask_boundary = mask_boundary(metadata, path)
    model.load_notes = notes  # what loading it did that its user should know (dock, CLI)
    for note in notes:
        logger.warning("%s", note)
    return model


#: what a checkpoint of the demo model's (CNN) architecture inherits from the demo model
INHERITED_KEYS = ("automatic", "input_smoothing", "mask_boundary")


def inherited_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The settings a checkpoint of the bundled demo model's CNN architecture takes when its
    metadata file is missing (copied or renamed without ``model.json``): the demo model's
    (:data:`INHERITED_KEYS`), which every checkpoint of that architecture inherits from our
    trainer. Without them segment everything keeps almost nothing (SAM's thresholds; 3D
    F1 0.04 instead of 0.58 for a fine-tuned demo model on the real development stack). Says
    so in a warning."""
    kept = demo_settings()
    logger.warning("%s", missing_metadata_note(path))
    return kept


def inherits_demo_settings(metadata: dict, encoder: str) -> bool:
    """Whether a model of the encoder kind ``encoder`` loaded from a checkpoint whose metadata
    is ``metadata`` (:func:`~napari_sam.models.checkpoint.read_checkpoint`'s) takes the
    bundled demo model's settings (:func:`inherited_settings`): a checkpoint of the demo's
    CNN architecture without a metadata file that describes it (none, or one of another
    checkpoint). Loading (:func:`load_model`) and the batch jobs' resume signature
    (:func:`declared_input_smoothing`) both ask this."""
    return "sidecar" not in metadata and encoder == "cnn"


def loading_settings(metadata: dict, encoder: str) -> dict[str, Any]:
    """The settings a SAM model of the encoder kind ``encoder`` loads with, from its
    checkpoint's ``metadata`` (:func:`~napari_sam.models.checkpoint.read_checkpoint`'s): those
    entries, over the demo model's settings where it inherits them
    (:func:`inherits_demo_settings`)."""
    if inherits_demo_settings(metadata, encoder):
        return {**demo_settings(), **metadata}
    return dict(metadata)


def declared_settings(path: str | os.PathLike, *, hash_file: bool = True) -> dict[str, Any]:
    """The settings the checkpoint file ``path`` loads with (its metadata entries:
    ``"automatic"``, ``"input_smoothing"``, ``"mask_boundary"``, ...), told without loading
    its weights (:func:`~napari_sam.models.checkpoint.checkpoint_outline` reads the file's
    structure): its own entries, those of a metadata file that describes it put over them
    (:func:`~napari_sam.models.checkpoint.with_metadata_file`; ``hash_file=False``: compared
    by size only), and the demo model's where it inherits them (:func:`loading_settings`),
    as :func:`load_model` takes them. Empty for a SAM 2 checkpoint (loading takes none).

    Raises
    ------
    ValueError, OSError
        Where loading it fails: the file or its metadata file cannot be read, or the
        metadata file holds no JSON object.
    """
    encoder, own = checkpoint_outline(path)
    if encoder == "sam2":
        return {}
    return loading_settings(with_metadata_file(own, path, hash_file=hash_file), encoder)


def demo_settings() -> dict[str, Any]:
    """The bundled demo model's settings (:data:`INHERITED_KEYS`) from its metadata file."""
    demo = _read_metadata_file(where(DEMO_NAME))
    return {k: demo[k] for k in INHERITED_KEYS if k in demo}


def missing_metadata_note(path: str | os.PathLike,
                          ignored: str | os.PathLike | None = None) -> str:
    """What :func:`inherited_settings` tells the user of the checkpoint ``path``; ``ignored``:
    the metadata file beside it, not used because it describes another checkpoint."""
    what = "settings (segment everything thresholds, input smoothing, mask boundary)"
    if ignored is not None:
        return stale_metadata_note(path, ignored, f"{Path(path).name} takes its {what} from "
                                   "the bundled demo model, whose architecture it has.")
    return (f"{path} has no metadata file beside it ({Path(path).with_suffix('.json').name}): "
            f"its {what} are taken from the bundled demo model, whose architecture it has. "
            "Keep the .json that training wrote with the .pt (same name).")


def mask_boundary(metadata: dict, path: str | os.PathLike = "") -> str:
    """Where a checkpoint's metadata asks masks to be cut (key ``"mask_boundary"``:
    ``"threshold"``, SAM's rule and the default, or ``"edge"``, see
    :mod:`napari_sam.edge_threshold`); a ValueError naming the file for anything else."""
    value = metadata.get("mask_boundary", "threshold")
    if value not in BOUNDARIES:
        raise ValueError(f"{path}: the sidecar's 'mask_boundary' must be one of "
                         f"{', '.join(map(repr, BOUNDARIES))}, got {value!r}")
    return str(value)


#: segment_everything thresholds a checkpoint's metadata may recommend (``"automatic"`` key)
AUTOMATIC_KEYS = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh")


def automatic_defaults(metadata: dict, path: str | os.PathLike = "") -> dict[str, float]:
    """The ``segment_everything`` thresholds (and NMS threshold) recommended by a checkpoint's
    metadata.

    A model whose IoU head or logits are calibrated differently from SAM's (the demo model
    predicts lower IoUs than SAM for masks of the same quality) keeps nothing at SAM's
    ``pred_iou_thresh=0.88, stability_score_thresh=0.95``; its metadata then says which
    thresholds to use instead, as ``{"automatic": {"pred_iou_thresh": 0.6, ...}}``.

    Returns
    -------
    dict
        Keys from ``AUTOMATIC_KEYS`` with values in [0, 1]; empty when none are given.

    Raises
    ------
    ValueError
        An unknown key or a value outside [0, 1], naming the file.
    """
    rec = metadata.get("automatic") or {}
    if not isinstance(rec, dict):
        raise ValueError(f"{path}: the sidecar's 'automatic' entry must be a mapping, got {rec!r}")
    out = {}
    for key, value in rec.items():
        if key not in AUTOMATIC_KEYS:
            raise ValueError(f"{path}: unknown key {key!r} in the sidecar's 'automatic' entry; "
                             f"known: {', '.join(AUTOMATIC_KEYS)}")
        if not isinstance(value, (int, float)) or not 0 <= float(value) <= 1:
            raise ValueError(f"{path}: 'automatic' {key} must be a number in [0, 1], got {value!r}")
        out[key] = float(value)
    return out


#: Largest input smoothing (image pixels) a checkpoint's metadata may ask for.
MAX_INPUT_SMOOTHING = 4.0


def input_smoothing(metadata: dict, path: str | os.PathLike = "") -> float:
    """The Gaussian sigma (image pixels) a checkpoint's metadata asks for on images the model
    input enlarges (:func:`napari_sam.preprocess.smooth_before_enlarging`).

    Given as ``{"input_smoothing": {"sigma": 0.7}}``; a model trained on images at their own
    scale (the demo model) can ask that the pixel noise of small images is not magnified.

    Returns
    -------
    float
        Sigma in [0, :data:`MAX_INPUT_SMOOTHING`]; 0 when the metadata says nothing.

    Raises
    ------
    ValueError
        An entry that is not ``{"sigma": number}`` or a sigma outside that range, naming the
        file.
    """
    rec = metadata.get("input_smoothing")
    if rec is None:
        return 0.0
    if not isinstance(rec, dict) or set(rec) != {"sigma"}:
        raise ValueError(f"{path}: the sidecar's 'input_smoothing' entry must be "
                         f"{{\"sigma\": <pixels>}}, got {rec!r}")
    sigma = rec["sigma"]
    if (isinstance(sigma, bool) or not isinstance(sigma, (int, float))
            or not 0 <= float(sigma) <= MAX_INPUT_SMOOTHING):
        raise ValueError(f"{path}: 'input_smoothing' sigma must be a number of pixels in "
                         f"[0, {MAX_INPUT_SMOOTHING:g}], got {sigma!r}")
    return float(sigma)


def smoothed_model_id(model_id: str, smoothing: float) -> str:
    """A model's id with the input smoothing it applies (what it sees depends on it:
    embeddings, stores, sessions and outputs must tell them apart): ``file:<hash>+smooth0.7``,
    ``model_id`` itself without smoothing. :func:`model_id_parts` reads it back."""
    return f"{model_id}+smooth{smoothing:g}" if smoothing > 0 else model_id


def model_id_parts(model_id) -> tuple[str, float | None]:
    """``(id of the weights, input smoothing)`` of a recorded model id
    (:func:`smoothed_model_id`'s): ``("file:<hash>", 0.7)`` for ``file:<hash>+smooth0.7``,
    ``(model_id, None)`` where it names no smoothing (or an unreadable one)."""
    base, *parts = str(model_id or "").split("+")
    for part in parts:
        if part.startswith("smooth"):
            try:
                return base, float(part[len("smooth"):])
            except ValueError:
                return base, None
    return base, None


def declared_input_smoothing(name_or_path: str | os.PathLike) -> float:
    """The input smoothing a model uses (:func:`input_smoothing`), told without loading the
    model: of the settings its checkpoint loads with (:func:`declared_settings`: the
    checkpoint's own entries, a metadata file that describes it over them, the demo model's
    where it inherits them). 0 when its file is not here or cannot be read, or its metadata
    file holds no JSON object (loading it fails and says why).

    The batch jobs put it in their resume signature, so that outputs made before a model
    smoothed its inputs (or with another smoothing) are made again rather than skipped."""
    text = os.fspath(name_or_path)
    path = where(text) if text in REGISTRY else Path(text).expanduser()
    try:
        stat = path.stat()
        return _smoothing_of_file(str(path), stat.st_size, stat.st_mtime_ns,
                                  _metadata_stamp(path))
    except (OSError, ValueError):  # unreadable or invalid: loading the model says so
        return 0.0


def _metadata_stamp(path: Path) -> tuple | None:
    """Size and modification time of a checkpoint's metadata file, None without one."""
    found = find_checkpoint_metadata(path)
    if found is None:
        return None
    stat = found.stat()
    return str(found), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=32)
def _smoothing_of_file(path: str, size: int, mtime_ns: int, stamp: tuple | None) -> float:
    """:func:`declared_input_smoothing` of the checkpoint ``path`` as it is now (its size,
    modification time and metadata file's ``stamp`` key the cache: one read per process)."""
    return input_smoothing(declared_settings(path), path)


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Sam:
    """Load a SAM model by registry name or from a checkpoint file.

    Parameters
    ----------
    name_or_path : str or PathLike
        A registry name (``"demo"``, ``"vit_b"``, ``"vit_b_lm"``, ...; see
        :func:`list_models`), downloaded and verified on first use; or the path of a
        checkpoint: Meta's or micro-sam's files, or one written by ``napari_sam.train``.
        A string is looked up in the registry first; a ``Path`` is always a path.
        Its config comes from the checkpoint's metadata, else from a JSON metadata file
        (``model.pt.json`` or ``model.json``, key ``"config"``), else from the weight shapes.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"``.
    progress : bool
        Show a progress bar while downloading.

    Returns
    -------
    Sam or Sam2Model
        In eval mode on ``device``; a SAM 2.1 checkpoint (Meta's ``sam2.1_hiera_*.pt``,
        ``{"model": state_dict}``, its size inferred from the shapes) gives a
        :class:`~napari_sam.models.sam2.Sam2Model` (``model.family == "sam2"``). ``model.model_id`` is ``"<name>:<checksum[:12]>"`` for
        registered models and ``"file:<sha256[:12]>"`` for files, so caches of embeddings
        can key on it. Loading the bundled demo model logs a warning saying so.

    Raises
    ------
    ValueError
        Unknown name that is not an existing file (the message lists the known names), or
        an unavailable device.
    FileNotFoundError
        ``"demo"`` before the demo model is installed.
    ModelDownloadError
        See :func:`fetch`.
    """
    from napari_sam.device import resolve_device

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"load_model needs a model name ({', '.join(REGISTRY)}) or the path of a "
            f"checkpoint file, got {name_or_path!r:.80}; e.g. load_model('demo')"
        )
    dev = resolve_device(device)
    is_path = isinstance(name_or_path, os.PathLike)
    text = os.fspath(name_or_path)
    if not is_path and text in REGISTRY:
        name = text
        spec = REGISTRY[name]
        path = fetch(name, progress=progress)
        if spec.packaged:
            if not verify(name):
                raise RuntimeError(
                    f"the bundled model file {path} does not match the sha256 recorded in "
                    f"{_metadata_path(path)}; reinstall napari-sam-stacks"
                )
            model_id = f"{name}:{file_digest(path)[:12]}"
        else:
            model_id = f"{name}:{spec.expected_hash[:12]}"
    else:
        name = None
        path = Path(text).expanduser()
        if path.is_dir():
            raise ValueError(
                f"{text!r} is a folder; give the checkpoint file inside it (.pt or .pth) "
                f"or a model name ({', '.join(REGISTRY)})"
            )
        if not path.is_file():
            looks_like_path = is_path or os.sep in text or "/" in text or path.suffix in (
                ".pt", ".pth", ".ckpt", ".bin", ".safetensors")
            if looks_like_path:
                raise ValueError(
                    f"checkpoint file not found: {path.resolve()}; check the path, or give "
                    f"the name of one of the known models: {', '.join(REGISTRY)}"
                )
            raise ValueError(
                f"{text!r} is neither a known model{suggest_name(text)} nor an existing checkpoint "
                f"file; known models: {', '.join(REGISTRY)}"
            )
        model_id = file_model_id(path)
    model = _build(path)
    smoothing = float(getattr(model, "input_smoothing", 0.0))
    # what the model sees depends on it: embeddings, stores and sessions must tell them apart
    model.model_id = smoothed_model_id(model_id, smoothing)
    if name == DEMO_NAME or path.resolve() == where(DEMO_NAME).resolve():
        logger.warning(
            "Using the bundled demo model (small, trained on synthetic scenes; fine for "
            "trying the tools, not for real data). For real data download SAM weights: "
            "napari-sam models download vit_b_lm (light microscopy) or vit_b"
        )
    return model.to(dev).eval()


#: what to use instead, by the family a function needed and did not get
_INSTEAD = {
    "sam1": "use method='sam2' (napari_sam.sam2_volume.segment_volume_sam2; CLI: napari-sam "
            "segment --method sam2) to propagate with it, or a SAM 1 model such as vit_b or "
            "vit_b_lm",
    "sam2": "use segment_volume / method='sam1' with it, or a SAM 2.1 checkpoint such as "
            "sam2.1_hiera_tiny (napari-sam models download sam2.1_hiera_tiny)",
}


def describe_family(model) -> str:
    """"a SAM 2.1 checkpoint (sam2.1_hiera_tiny)" or "a SAM 1 model (vit_b)": for messages."""
    if getattr(model, "family", None) == "sam2":
        return f"a SAM 2.1 checkpoint ({getattr(model, 'variant', 'custom')})"
    config = getattr(model, "config", None)
    name = getattr(config, "name", None) or getattr(config, "encoder", None) or "SAM"
    return f"a SAM 1 model ({name})"


def require_family(model, family: str, what: str):
    """Return ``model`` when its ``family`` is ``family`` ("sam1" or "sam2"); otherwise a
    ValueError naming what needed it, what the model is and what to do instead."""
    got = getattr(model, "family", "sam1")
    if got == family:
        return model
    wanted = "a SAM 1 model" if family == "sam1" else "a SAM 2.1 model"
    raise ValueError(f"{what} needs {wanted}, but this is {describe_family(model)}; "
                     f"{_INSTEAD[family]}")


def as_model(model, device="cpu", family: str | None = "sam1", what: str = "this"):
    """A SAM model from a model, a registry name or a checkpoint path.

    Parameters
    ----------
    model : Sam, Sam2Model, str or PathLike
        A model (returned as is); a registry name or a checkpoint path, loaded with
        :func:`load_model` onto ``device``.
    family : {"sam1", "sam2"} or None
        The family the caller needs (None: either); see :func:`require_family`.
    what : str
        The caller, named in the error message.

    Raises
    ------
    TypeError
        Anything else (None, a state_dict, another library's model), saying what to pass.
    ValueError
        A model of the other family, saying what to use instead.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, device=device)
    if family is not None and getattr(model, "family", None) in ("sam1", "sam2"):
        return require_family(model, family, what)
    if getattr(model, "family", None) == "sam2":
        return model
    needed = ("encode", "decode", "img_size", "embedding_size", "model_id", "to")
    if model is None or not all(hasattr(model, a) for a in needed):
        what = "None" if model is None else f"a {type(model).__module__}.{type(model).__name__}"
        hint = (
            " (a state_dict: save it with torch.save and pass the file's path)"
            if isinstance(model, dict)
            else ""
        )
        raise TypeError(
            f"a model is needed, got {what}{hint}; pass napari_sam.load_model(name_or_path) or "
            f"just the name ({', '.join(REGISTRY)}) or a checkpoint path, e.g. "
            "Predictor('demo') or embed(stack, 'vit_b')"
        )
    return model
