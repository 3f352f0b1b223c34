"""Named SAM checkpoints: where they come from, how they are verified, and how they load.

Every downloadable model has a URL and a published checksum. Downloads go through
:func:`pooch.retrieve`, which streams into a temporary file next to the target, checks the
hash and only then renames it into place, so a file under its final name in the cache is
always complete. A cached file whose size or hash is wrong (a truncated copy, a file placed
by hand that is not the one we expect) is never loaded: :func:`fetch` deletes it and
downloads again.

The cache folder is ``$NAPARI_SAM_CACHE_DIR`` when that is set, otherwise the platform
cache (``pooch.os_cache("napari-sam-stacks")``, for example ``~/.cache/napari-sam-stacks``
on Linux). Offline, put the file there by hand under the name :func:`where` prints.

>>> from napari_sam.models.registry import list_models, load_model
>>> [m["name"] for m in list_models()][:3]
['demo', 'vit_b', 'vit_l']
>>> model = load_model("vit_b")          # downloads 375 MB once, then loads from the cache
>>> model = load_model("my_model.pt")    # any SAM state_dict, ours or Meta's or micro-sam's
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from napari_sam.models.sam import Sam

__all__ = [
    "DEMO_NAME",
    "ModelDownloadError",
    "ModelSpec",
    "REGISTRY",
    "cache_dir",
    "fetch",
    "file_digest",
    "get_spec",
    "is_cached",
    "list_models",
    "load_model",
    "register",
    "verify",
    "weights_dir",
    "where",
]

logger = logging.getLogger(__name__)

#: Environment variable that overrides the cache folder.
CACHE_ENV = "NAPARI_SAM_CACHE_DIR"
#: Seconds to wait for the server to answer (connect and between received chunks).
DOWNLOAD_TIMEOUT = 30
#: Name of the bundled model.
DEMO_NAME = "demo"

_ARCHITECTURES = ("vit_b", "vit_l", "vit_h", "vit_t", "cnn")
_HASH_ALGORITHMS = ("sha256", "xxh128")
_CHUNK = 1 << 20


class ModelDownloadError(RuntimeError):
    """A model file could not be downloaded or did not match its published checksum.

    The message names the URL that failed, the exact path where the file can be placed
    by hand, and the checksum it must have.
    """


@dataclass(frozen=True)
class ModelSpec:
    """One named checkpoint.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"vit_b"``.
    architecture : str
        ``"vit_b"``, ``"vit_l"``, ``"vit_h"``, ``"vit_t"`` (MobileSAM's TinyViT) or ``"cnn"``
        (the demo encoder).
    url : str or None
        Where to download it from (``http(s)://`` or ``file://``); None for a file that
        ships inside the package (the demo model).
    sha256 : str or None
        Published SHA-256 of the file (hex). Used to verify the file when given.
    size : int or None
        Size of the file in bytes, when published. A cached file of another size is
        treated as corrupt without hashing it.
    filename : str
        Name of the file in the cache folder (or in the package's ``weights/`` folder).
    description : str
        What the model is and what it is good for.
    source : str
        Who publishes the weights, e.g. ``"Meta AI"`` or ``"micro-sam"``.
    xxh128 : str or None
        Published xxHash-128 of the file (hex). micro-sam publishes only this one, so it
        verifies their models; it needs the ``xxhash`` package.
    """

    name: str
    architecture: str
    url: str | None
    sha256: str | None
    size: int | None
    filename: str
    description: str
    source: str
    xxh128: str | None = None

    def __post_init__(self) -> None:
        if self.architecture not in _ARCHITECTURES:
            raise ValueError(
                f"model {self.name!r}: architecture must be one of {_ARCHITECTURES}, "
                f"got {self.architecture!r}"
            )
        if self.url is not None and self.sha256 is None and self.xxh128 is None:
            raise ValueError(
                f"model {self.name!r} has a URL but no checksum; downloads must be verifiable"
            )
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"model {self.name!r}: filename must be a bare file name")

    @property
    def hash_algorithm(self) -> str | None:
        """``"sha256"`` when a SHA-256 is known, else ``"xxh128"``, else None."""
        if self.sha256:
            return "sha256"
        if self.xxh128:
            return "xxh128"
        return None

    @property
    def expected_hash(self) -> str | None:
        """Hex digest the file must have under :attr:`hash_algorithm`."""
        return self.sha256 or self.xxh128

    @property
    def known_hash(self) -> str | None:
        """The checksum in pooch's ``"algorithm:hex"`` form."""
        if self.hash_algorithm is None:
            return None
        return f"{self.hash_algorithm}:{self.expected_hash}"

    @property
    def packaged(self) -> bool:
        """True for a file that ships with the package instead of being downloaded."""
        return self.url is None


# Sources (see docs/models.md for the full record):
# - URLs of Meta's checkpoints: facebookresearch/segment-anything README, repeated in
#   micro-sam's micro_sam/util.py models(); SHA-256: micro-sam's registry before it moved to
#   xxh128 (micro_sam/util.py at commit 4d7a40662c8f52e71cdcc4d94836a5ea94ce3d9b), matching
#   the values many other projects pin; sizes: the Content-Length of Meta's server as
#   recorded by several projects.
# - micro-sam models: micro_sam/v1/util.py models() at commit
#   df11268e9a40c4a8944dc387134403c2dec050d3 (BioImage.IO-hosted files, xxh128 only;
#   micro-sam publishes neither a SHA-256 nor a size for them). vit_t_lm and vit_t_em_organelles:
#   micro_sam/util.py models() of micro-sam 1.8.14 (PyPI), same URLs and xxh128.
# - vit_t is MobileSAM's weights/mobile_sam.pt (ChaoningZhang/MobileSAM, unchanged since commit
#   a509aac54fdd7af59f843135f2f7cee307283c88); SHA-256 and size as pinned by several projects,
#   the same SHA-256 as micro-sam's registry gave its copy of the file (commit 4d7a406 above),
#   whose xxh128 micro-sam 1.8.14 lists.
_SPECS = (
    ModelSpec(
        name=DEMO_NAME,
        architecture="cnn",
        url=None,
        sha256=None,
        size=None,
        filename="demo.pt",
        description=(
            "Small CNN-encoder SAM trained by napari-sam-stacks on its own synthetic "
            "scenes; ships with the package. For trying the tools out and for tests, not "
            "for real data."
        ),
        source="napari-sam-stacks",
    ),
    ModelSpec(
        name="vit_b",
        architecture="vit_b",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size=375_042_383,
        filename="sam_vit_b_01ec64.pth",
        description=(
            "Segment Anything ViT-B (91M parameters): the fastest original SAM; a good "
            "default for natural-looking images, X-ray and underwater scenes on a CPU."
        ),
        source="Meta AI",
        xxh128="6923c33df3637b6a922d7682bfc9a86b",
    ),
    ModelSpec(
        name="vit_l",
        architecture="vit_l",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        size=1_249_524_607,
        filename="sam_vit_l_0b3195.pth",
        description=(
            "Segment Anything ViT-L (308M parameters): most of ViT-H's quality at about "
            "half its cost; use it on a GPU."
        ),
        source="Meta AI",
        xxh128="a82beb3c660661e3dd38d999cc860e9a",
    ),
    ModelSpec(
        name="vit_h",
        architecture="vit_h",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size=2_564_550_879,
        filename="sam_vit_h_4b8939.pth",
        description=(
            "Segment Anything ViT-H (636M parameters): the largest and most accurate "
            "original SAM; needs a GPU."
        ),
        source="Meta AI",
        xxh128="97698fac30bd929c2e6d8d8cc15933c2",
    ),
    ModelSpec(
        name="vit_t",
        architecture="vit_t",
        url="https://github.com/ChaoningZhang/MobileSAM/raw/"
            "a509aac54fdd7af59f843135f2f7cee307283c88/weights/mobile_sam.pt",
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        size=40_728_226,
        filename="mobile_sam.pt",
        description="MobileSAM (TinyViT image encoder, 10M parameters, SAM's prompt encoder "
            "and mask decoder): several times faster than ViT-B on a CPU, a little less "
            "accurate; the choice for a laptop without a GPU.",
        source="MobileSAM (Zhang et al.)",
        xxh128="8eadbc88aeb9d8c7e0b4b60c3db48bd0",
    ),
    ModelSpec(
        name="vit_b_lm",
        architecture="vit_b",
        url=(
            "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "diplomatic-bug/1.2/files/vit_b.pt"
        ),
        sha256=None,
        size=None,
        filename="vit_b_lm.pt",
        description=(
            "micro-sam ViT-B finetuned on light microscopy (cells and nuclei, "
            "fluorescence and label-free): the first choice for LM stacks."
        ),
        source="micro-sam (BioImage.IO 'diplomatic-bug' 1.2)",
        xxh128="fe9252a29f3f4ea53c15a06de471e186",
    ),
    ModelSpec(
        name="vit_l_lm",
        architecture="vit_l",
        url=(
            "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "idealistic-rat/1.2/files/vit_l.pt"
        ),
        sha256=None,
        size=None,
        filename="vit_l_lm.pt",
        description=(
            "micro-sam ViT-L finetuned on light microscopy: better than vit_b_lm on hard "
            "cases, about three times slower; use it on a GPU."
        ),
        source="micro-sam (BioImage.IO 'idealistic-rat' 1.2)",
        xxh128="017f20677997d628426dec80a8018f9d",
    ),
    ModelSpec(
        name="vit_t_lm",
        architecture="vit_t",
        url="https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "faithful-chicken/1.1/files/vit_t.pt",
        sha256=None,
        size=None,
        filename="vit_t_lm.pt",
        description="micro-sam MobileSAM (TinyViT) finetuned on light microscopy (cells and "
            "nuclei): vit_b_lm's task at a fraction of its cost; LM on a laptop.",
        source="micro-sam (BioImage.IO 'faithful-chicken' 1.1)",
        xxh128="72ec5074774761a6e5c05a08942f981e",
    ),
    ModelSpec(
        name="vit_b_em_organelles",
        architecture="vit_b",
        url=(
            "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "noisy-ox/1.2/files/vit_b.pt"
        ),
        sha256=None,
        size=None,
        filename="vit_b_em_organelles.pt",
        description=(
            "micro-sam ViT-B finetuned on electron microscopy organelles (mitochondria, "
            "nuclei and other round compartments)."
        ),
        source="micro-sam (BioImage.IO 'noisy-ox' 1.2)",
        xxh128="f3bf2ed83d691456bae2c3f9a05fb438",
    ),
    ModelSpec(
        name="vit_t_em_organelles",
        architecture="vit_t",
        url="https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "greedy-whale/1/files/vit_t.pt",
        sha256=None,
        size=None,
        filename="vit_t_em_organelles.pt",
        description="micro-sam MobileSAM (TinyViT) finetuned on electron microscopy "
            "organelles (mitochondria, nuclei): vit_b_em_organelles' task on a laptop.",
        source="micro-sam (BioImage.IO 'greedy-whale' 1)",
        xxh128="253474720c497cce605e57c9b1d18fd9",
    ),
)

#: Every known model by name. Add your own with :func:`register`.
REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to :data:`REGISTRY` so :func:`fetch` and :func:`load_model` know its name.

    Raises ``ValueError`` if the name is taken, unless ``replace=True``.
    """
    if spec.name in REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def _suggest(name: str) -> str:
    """' (did you mean 'vit_b'?)' for a close registry name, else ''."""
    import difflib

    close = difflib.get_close_matches(str(name).lower(), [n.lower() for n in REGISTRY], n=2,
                                      cutoff=0.6)
    names = {n.lower(): n for n in REGISTRY}
    return f" (did you mean {' or '.join(repr(names[c]) for c in close)}?)" if close else ""


def get_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` for ``name``; ``ValueError`` listing known names otherwise
    (with the closest names when there are some)."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model {name!r}{_suggest(name)}; known models: {', '.join(REGISTRY)}"
        ) from None


# --------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Folder that holds downloaded checkpoints.

    ``$NAPARI_SAM_CACHE_DIR`` when set (read on every call), else the platform cache
    folder for ``napari-sam-stacks``. The folder is created when something is downloaded.
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-sam-stacks"))


def weights_dir() -> Path:
    """The package's ``weights/`` folder, home of the bundled demo model."""
    return Path(__file__).resolve().parent.parent / "weights"


def where(name: str) -> Path:
    """Path where model ``name`` is (or will be) stored: the file to place by hand offline."""
    spec = get_spec(name)
    if spec.packaged:
        return weights_dir() / spec.filename
    return cache_dir() / spec.filename


# --------------------------------------------------------------------------- hashing

_digest_cache: dict[tuple[str, str], tuple[int, int, str]] = {}
_digest_lock = threading.Lock()


def _hasher(algorithm: str):
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "xxh128":
        try:
            import xxhash
        except ImportError:
            raise ImportError(
                "checking this model needs the 'xxhash' package, because its publisher "
                "(micro-sam) gives only an xxh128 checksum: pip install xxhash"
            ) from None
        return xxhash.xxh128()
    raise ValueError(f"unsupported hash algorithm {algorithm!r}; use one of {_HASH_ALGORITHMS}")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Results are remembered per (resolved path, algorithm) together with the file's size and
    modification time, so asking again for an unchanged multi-GB checkpoint is free; a
    changed file is hashed again.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), algorithm)
    with _digest_lock:
        hit = _digest_cache.get(key)
    if hit is not None and hit[0] == stat.st_size and hit[1] == stat.st_mtime_ns:
        return hit[2]
    h = _hasher(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _digest_lock:
        _digest_cache[key] = (stat.st_size, stat.st_mtime_ns, digest)
    return digest


def _problem(path: Path, spec: ModelSpec) -> str | None:
    """Why the file at ``path`` is not ``spec``'s checkpoint, or None when it is."""
    if not path.is_file():
        return "the file does not exist"
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"it has {size} bytes instead of {spec.size}"
    if spec.hash_algorithm is None:
        return None
    actual = file_digest(path, spec.hash_algorithm)
    if actual != spec.expected_hash.lower():
        return f"its {spec.hash_algorithm} is {actual} instead of {spec.expected_hash}"
    return None


# --------------------------------------------------------------------------- download


def _by_hand(spec: ModelSpec, target: Path, url: str) -> str:
    checks = []
    if spec.sha256:
        checks.append(f"sha256 {spec.sha256}")
    if spec.xxh128:
        checks.append(f"xxh128 {spec.xxh128}")
    if spec.size is not None:
        checks.append(f"{spec.size} bytes")
    return (
        f"To install it by hand, download {url} on a machine with internet access and "
        f"place the file at {target} (expected: {', '.join(checks)}). "
        f"Set {CACHE_ENV} to use another cache folder."
    )


def _file_url_downloader(url: str, output_file: str, pooch: Any = None) -> None:
    """pooch downloader for ``file://`` URLs (a checkpoint on a shared or mounted drive)."""
    parsed = urllib.parse.urlparse(url)
    source = Path(urllib.request.url2pathname(parsed.path))
    with open(source, "rb") as src, open(output_file, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def _download(spec: ModelSpec, url: str, target: Path, progress: bool) -> None:
    import pooch
    import requests

    if spec.hash_algorithm == "xxh128":
        _hasher("xxh128")  # fail before a long download if xxhash is missing
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme == "file":
        downloader = _file_url_downloader
    elif scheme in ("http", "https"):
        try:
            import tqdm  # noqa: F401

            progressbar = bool(progress)
        except ImportError:
            progressbar = False
        downloader = pooch.HTTPDownloader(progressbar=progressbar, timeout=DOWNLOAD_TIMEOUT)
    else:
        raise ModelDownloadError(
            f"cannot download model {spec.name!r} from {url}: unsupported URL scheme "
            f"{scheme!r} (use http, https or file). " + _by_hand(spec, target, url)
        )
    try:
        pooch.retrieve(
            url,
            known_hash=spec.known_hash,
            fname=spec.filename,
            path=target.parent,
            downloader=downloader,
        )
    except ValueError as err:  # pooch: the downloaded file's hash does not match
        raise ModelDownloadError(
            f"the file downloaded for model {spec.name!r} from {url} does not match its "
            f"published checksum ({err}); it was discarded and nothing was saved. "
            + _by_hand(spec, target, url)
        ) from err
    except (requests.RequestException, OSError) as err:
        raise ModelDownloadError(
            f"could not download model {spec.name!r} from {url}: "
            f"{type(err).__name__}: {err}. " + _by_hand(spec, target, url)
        ) from err
    # pooch has just checked the hash of these exact bytes: remember it instead of
    # reading a multi-GB file again, and keep the (cheap) size check.
    stat = target.stat()
    with _digest_lock:
        _digest_cache[(str(target.resolve()), spec.hash_algorithm)] = (
            stat.st_size,
            stat.st_mtime_ns,
            spec.expected_hash.lower(),
        )
    problem = _problem(target, spec)
    if problem is not None:
        _remove(target)
        raise ModelDownloadError(
            f"the file downloaded for model {spec.name!r} from {url} is wrong: {problem}; "
            "it was deleted. " + _by_hand(spec, target, url)
        )


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


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
    _check_cache_dir(target.parent)
    if target.exists():
        problem = _problem(target, spec)
        if problem is None:
            return target
        logger.warning(
            "Cached model file %s is incomplete or corrupt (%s); deleting it and downloading "
            "model %r again.",
            target,
            problem,
            name,
        )
        try:
            _remove(target)
        except OSError as err:
            raise ModelDownloadError(
                f"the cached file {target} for model {name!r} is incomplete or corrupt "
                f"({problem}) and cannot be deleted ({type(err).__name__}: {err}); the cache "
                f"folder is probably read-only. Delete the file by hand, or set {CACHE_ENV} to "
                "a folder you can write to. " + _by_hand(spec, target, url or spec.url)
            ) from None
    _download(spec, url or spec.url, target, progress)
    return target


def _check_cache_dir(folder: Path) -> None:
    """ModelDownloadError when the cache folder (or a parent) exists but is not a folder."""
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                source = (f"{CACHE_ENV}={os.environ.get(CACHE_ENV)!r}"
                          if os.environ.get(CACHE_ENV, "").strip() else "the cache folder")
                raise ModelDownloadError(
                    f"cannot store models in {folder}: {p} is a file, not a folder "
                    f"({source}). Set {CACHE_ENV} to a folder (it is created if missing), or "
                    "unset it to use the platform cache folder."
                )
            return


def verify(name: str) -> bool:
    """True when model ``name``'s file is present and has its published size and checksum.

    The bundled demo model is checked against the ``sha256`` in its sidecar JSON when that
    records one.
    """
    spec = get_spec(name)
    path = where(name)
    if not path.is_file():
        return False
    if spec.packaged:
        expected = _read_sidecar(path).get("sha256")
        return expected is None or file_digest(path) == str(expected).lower()
    return _problem(path, spec) is None


def is_cached(name: str) -> bool:
    """True when model ``name``'s file is present with the right size (no hashing; see verify)."""
    spec = get_spec(name)
    path = where(name)
    if not path.is_file():
        return False
    return spec.size is None or path.stat().st_size == spec.size


def list_models() -> list[dict[str, Any]]:
    """One record per registered model.

    Keys: ``name``, ``architecture``, ``source``, ``size`` (bytes or None), ``cached``
    (see :func:`is_cached`), ``path`` (str, see :func:`where`), ``url`` (None for the
    bundled model) and ``description``.
    """
    return [
        {
            "name": spec.name,
            "architecture": spec.architecture,
            "source": spec.source,
            "size": spec.size,
            "cached": is_cached(spec.name),
            "path": str(where(spec.name)),
            "url": spec.url,
            "description": spec.description,
        }
        for spec in REGISTRY.values()
    ]


# --------------------------------------------------------------------------- loading


def _sidecar_path(path: Path) -> Path:
    """The metadata file next to a checkpoint, as :func:`read_checkpoint` looks for it:
    ``model.pt.json`` if present, else ``model.json`` (also where none exists yet)."""
    from napari_sam.models.build import find_sidecar

    return find_sidecar(path) or path.with_suffix(".json")


def _read_sidecar(path: Path) -> dict[str, Any]:
    """Metadata stored next to a checkpoint, or {} when there is none."""
    side = _sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        with open(side, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the model metadata file {side}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"the model metadata file {side} must hold a JSON object")
    return data


def _build(path: Path) -> Sam:
    from napari_sam.models.build import read_checkpoint, sam_from_state_dict

    state_dict, metadata = read_checkpoint(path)  # unwraps; config from metadata or sidecar
    try:
        model = sam_from_state_dict(state_dict, config=metadata.get("config"))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    model.automatic_defaults = automatic_defaults(metadata, path)
    return model


#: segment_everything thresholds a checkpoint's sidecar may recommend (``"automatic"`` key)
AUTOMATIC_KEYS = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh")


def automatic_defaults(metadata: dict, path: str | os.PathLike = "") -> dict[str, float]:
    """The ``segment_everything`` thresholds (and NMS threshold) recommended by a checkpoint's
    metadata.

    A model whose IoU head or logits are calibrated differently from SAM's (the demo model
    predicts lower IoUs than SAM for masks of the same quality) keeps nothing at SAM's
    ``pred_iou_thresh=0.88, stability_score_thresh=0.95``; its sidecar then says which
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
        Its config comes from the checkpoint's metadata, else from a sidecar JSON
        (``model.pt.json`` or ``model.json``, key ``"config"``), else from the weight shapes.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"``.
    progress : bool
        Show a progress bar while downloading.

    Returns
    -------
    Sam
        In eval mode on ``device``. ``model.model_id`` is ``"<name>:<checksum[:12]>"`` for
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
                    f"{_sidecar_path(path)}; reinstall napari-sam-stacks"
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
                f"{text!r} is neither a known model{_suggest(text)} nor an existing checkpoint "
                f"file; known models: {', '.join(REGISTRY)}"
            )
        model_id = f"file:{file_digest(path)[:12]}"
    model = _build(path)
    model.model_id = model_id
    if name == DEMO_NAME or path.resolve() == where(DEMO_NAME).resolve():
        logger.warning(
            "Using the bundled demo model (small, trained on synthetic scenes; fine for "
            "trying the tools, not for real data). For real data download SAM weights: "
            "napari-sam models download vit_b"
        )
    return model.to(dev).eval()
