"""Model files on disk: the cache folder, hashing (SHA-256 or xxh128, remembered per file),
checking a file against its :class:`~napari_sam.models.catalog.ModelSpec`, and downloading it.

Downloads go through :func:`pooch.retrieve`, which streams into a temporary file next to the
target, checks the hash and only then renames it into place, so a file under its final name
in the cache is always complete.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from napari_sam.io import remove_path
from napari_sam.io.dead_temporaries import remove_dead, tagged_path, writer_lock
from napari_sam.io.write_errors import naming_output

from .catalog import ModelSpec

__all__ = [
    "CACHE_ENV",
    "DOWNLOAD_TIMEOUT",
    "ModelDownloadError",
    "by_hand_message",
    "cache_dir",
    "check_cache_dir",
    "download",
    "file_digest",
    "file_model_id",
    "remember_digest",
    "file_problem",
    "set_aside",
    "size_problem",
]

#: Environment variable that overrides the cache folder.
CACHE_ENV = "NAPARI_SAM_CACHE_DIR"
#: Seconds to wait for the server to answer (connect and between received chunks).
DOWNLOAD_TIMEOUT = 30

_HASH_ALGORITHMS = ("sha256", "xxh128")
_CHUNK = 1 << 20


class ModelDownloadError(RuntimeError):
    """A model file could not be downloaded or did not match its published checksum.

    The message names the URL that failed, the exact path where the file can be placed
    by hand, and the checksum it must have; ``summary`` says in a few words why it failed
    (e.g. "offline, or the server did not answer"), for a status line.
    """

    def __init__(self, message: str, summary: str | None = None):
        super().__init__(message)
        self.summary = summary or message


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


def check_cache_dir(folder: Path) -> None:
    """ModelDownloadError when the cache folder (or a parent) exists but is not a folder."""
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                source = (f"{CACHE_ENV}={os.environ.get(CACHE_ENV)!r}"
                          if os.environ.get(CACHE_ENV, "").strip() else "the cache folder")
                raise ModelDownloadError(
                    f"cannot store models in {folder}: {p} is a file, not a folder "
                    f"({source}). Set {CACHE_ENV} to a folder (it is created if missing), or "
                    "unset it to use the platform cache folder.",
                    summary=f"its cache folder {folder} cannot be made: {p} is a file",
                )
            return


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


def remember_digest(path: str | os.PathLike, digest: str, algorithm: str = "sha256") -> None:
    """Remember ``digest`` as :func:`file_digest` of the file ``path`` at its present size and
    modification time, without reading it: for a file whose bytes were just hashed under
    another name (a temporary file renamed to ``path``: a rename keeps both)."""
    path = Path(path).resolve()
    stat = path.stat()
    with _digest_lock:
        _digest_cache[(str(path), algorithm)] = (stat.st_size, stat.st_mtime_ns, digest)


def file_model_id(path: str | os.PathLike) -> str:
    """The model id of a checkpoint loaded from the file ``path``: ``"file:<sha256[:12]>"``
    (:func:`file_digest`, remembered per size and mtime). OSError for a missing file."""
    return f"file:{file_digest(path)[:12]}"


def size_problem(path: Path, spec: ModelSpec) -> str | None:
    """``"wrong size (expected N bytes, found M)"`` when the file at ``path`` does not have
    ``spec``'s published size, else None (also when no size is published). No hashing."""
    if not path.is_file():
        return "not a file" if path.exists() else "the file does not exist"
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"wrong size (expected {spec.size} bytes, found {size})"
    return None


def file_problem(path: Path, spec: ModelSpec) -> str | None:
    """Why the file at ``path`` is not ``spec``'s checkpoint, or None when it is: the size
    is checked first (:func:`size_problem`), then the checksum (``"wrong checksum (...)"``)."""
    problem = size_problem(path, spec)
    if problem is not None or spec.hash_algorithm is None:
        return problem
    actual = file_digest(path, spec.hash_algorithm)
    if actual != spec.expected_hash.lower():
        return (f"wrong checksum (its {spec.hash_algorithm} is {actual}, expected "
                f"{spec.expected_hash})")
    return None


def set_aside(path: Path) -> Path:
    """Rename the file at ``path`` to ``<name>.bad-<YYYYmmdd-HHMMSS>`` beside it (never over
    another file) and return the new path: a wrong file in the cache is kept, not deleted,
    since a user may have placed it there. OSError when it cannot be renamed."""
    import datetime

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        aside = path.with_name(f"{path.name}.bad-{stamp}{'' if not n else f'-{n}'}")
        if not aside.exists() and not aside.is_symlink():
            os.rename(path, aside)
            return aside
    raise FileExistsError(errno.EEXIST, f"too many set-aside copies of {path}", str(path))


def _failure_summary(err: BaseException) -> str:
    """A few words on why a download failed, without its URL (a status line's)."""
    import requests

    response = getattr(err, "response", None)
    if isinstance(err, requests.HTTPError) and response is not None:
        return f"the server answered HTTP {response.status_code} {response.reason or ''}".strip()
    if isinstance(err, requests.exceptions.SSLError):
        return "the secure connection failed (SSLError: a proxy's certificate?)"
    if isinstance(err, requests.exceptions.ProxyError):
        return "the proxy refused the connection (ProxyError)"
    if isinstance(err, (requests.ConnectionError, requests.Timeout)):
        return "offline, or the server did not answer"
    if isinstance(err, OSError) and err.strerror:
        return f"{type(err).__name__}: {err.strerror}"
    return type(err).__name__


def by_hand_message(spec: ModelSpec, target: Path, url: str | None = None) -> str:
    """How to install ``spec``'s file by hand: the model's official URL, where to put the
    file, its checksums.

    Parameters
    ----------
    spec : ModelSpec
        The model.
    target : Path
        Where the file belongs in the cache.
    url : str, optional
        The URL a download was tried from. When it is not the official one (a mirror given
        with ``--url`` or ``url=``), the message says it failed and names the official URL.

    Returns
    -------
    str
        One or two sentences to append to an error message.
    """
    source = spec.url
    if url and url != spec.url:
        source = f"the model's official file {spec.url} (the URL given, {url}, failed)"
    checks = []
    if spec.sha256:
        checks.append(f"sha256 {spec.sha256}")
    if spec.xxh128:
        checks.append(f"xxh128 {spec.xxh128}")
    if spec.size is not None:
        checks.append(f"{spec.size} bytes")
    return (
        f"To install it by hand, download {source} on a machine with internet access and "
        f"place the file at {target} (expected: {', '.join(checks)}). "
        f"Set {CACHE_ENV} to use another cache folder."
    )


def _file_url_downloader(url: str, output_file: str, pooch: Any = None) -> None:
    """pooch downloader for ``file://`` URLs (a checkpoint on a shared or mounted drive)."""
    parsed = urllib.parse.urlparse(url)
    source = Path(urllib.request.url2pathname(parsed.path))
    with open(source, "rb") as src, open(output_file, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def _download_into_place(downloader, url: str, spec: ModelSpec, target: Path) -> None:
    """Download ``url`` with pooch's ``downloader`` to ``.NAME.part-HOST-PID-NS`` beside
    ``target`` (holding its lock: :func:`~napari_sam.io.dead_temporaries.writer_lock`), check its hash (ValueError when it does not match) and rename it to
    ``target``; the partial file goes whatever happens, and those of downloads killed before
    (SIGKILL, a power cut: a multi-GB ``tmpXXXXXXXX`` under pooch's own name stayed in the
    cache folder for good) are removed first
    (:func:`~napari_sam.io.dead_temporaries.remove_dead`). An ``OSError`` of a full or
    read-only cache names ``target``."""
    from pooch.hashes import hash_matches

    target.parent.mkdir(parents=True, exist_ok=True)
    remove_dead(target, "part")
    part = tagged_path(target, "part")
    with writer_lock(part):  # a sweep elsewhere (another container) leaves it while it runs
        try:
            downloader(url, str(part), None)
            hash_matches(str(part), spec.known_hash, strict=True, source=target.name)
            os.replace(part, target)
        except OSError as exc:  # a full or read-only cache: name the model's file, not ``part``
            naming_output(exc, target, part)
            raise
        finally:
            part.unlink(missing_ok=True)


def download(spec: ModelSpec, url: str, target: Path, progress: bool) -> None:
    """Download ``spec``'s file from ``url`` to ``target`` with pooch (temporary file, hash
    check, then rename); ModelDownloadError, saying how to install it by hand, on failure."""
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
            f"{scheme!r} (use http, https or file). " + by_hand_message(spec, target, url),
            summary=f"unsupported URL scheme {scheme!r}",
        )
    try:
        _download_into_place(downloader, url, spec, target)
    except ValueError as err:  # pooch: the downloaded file's hash does not match
        raise ModelDownloadError(
            f"the file downloaded for model {spec.name!r} from {url} does not match its "
            f"published checksum ({_mismatch_words(err, spec)}: a truncated copy, another "
            "model's file or no checkpoint at all); the copy downloaded was discarded and "
            "nothing was saved (the file at the URL is left as it is). "
            + by_hand_message(spec, target, url),
            summary="the file downloaded does not match its published checksum",
        ) from err
    except (requests.RequestException, OSError) as err:
        raise ModelDownloadError(
            f"could not download model {spec.name!r} from {url}: "
            f"{type(err).__name__}: {err}. " + by_hand_message(spec, target, url),
            summary=_failure_summary(err),
        ) from err
    # pooch has just checked the hash of these exact bytes: remember it instead of
    # reading a multi-GB file again, and keep the (cheap) size check.
    remember_digest(target, spec.expected_hash.lower(), spec.hash_algorithm)
    problem = file_problem(target, spec)
    if problem is not None:
        remove_path(target)
        raise ModelDownloadError(
            f"the file downloaded for model {spec.name!r} from {url} is wrong: {problem}; "
            "it was deleted. " + by_hand_message(spec, target, url),
            summary=f"the file downloaded is wrong ({problem})",
        )


def _mismatch_words(err: ValueError, spec) -> str:
    """pooch's hash mismatch ``err`` in our words: ``its xxh128 is X, the published one Y``
    (pooch's own text where it cannot be read: it says "Deleted download for safety", which
    reads as if the file at the URL were deleted)."""
    m = re.search(r"expected \S*?:?([0-9a-f]{8,}) but got ([0-9a-f]{8,})", str(err))
    if m is None:
        return str(err)
    return f"its {spec.hash_algorithm} is {m.group(2)}, the published one {m.group(1)}"
