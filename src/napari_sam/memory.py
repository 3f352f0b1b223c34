"""Memory limits and out-of-memory errors.

:func:`available_memory` says how many bytes a new allocation can have here: the least of the
machine's available memory (Linux ``MemAvailable``), the room left under the process's cgroup
limit (a SLURM job, a container: ``memory.max`` of cgroup v2, ``memory.limit_in_bytes`` of v1)
and the room left under its address-space limit (``ulimit -v``, ``prlimit --as``). A shared
cluster node reports the whole node's memory in ``MemAvailable``; the job's limit is the
cgroup's, or a parent's (SLURM sets it on the job's and the step's cgroups). A cgroup's usage
counts the page cache of the files read; its inactive part (``inactive_file`` of
``memory.stat``) is reclaimable and counts as free, as ``MemAvailable`` counts it.

:func:`is_out_of_memory` tells the errors an allocation that did not fit raises: Python's
``MemoryError`` (numpy's ``Unable to allocate ...``), torch's ``OutOfMemoryError`` (a GPU) and
the ``RuntimeError`` of torch's CPU allocator (``DefaultCPUAllocator: can't allocate memory``),
and a library that cannot be loaded under an address-space limit (``ulimit -v``: the dynamic
loader's ``failed to map segment from shared object``, an ``ImportError`` or ``OSError``).
:func:`out_of_memory_words` puts one in a few words for a message that goes on to say what to
do (the CLI, the dock).

Torch is never imported here.
"""

from __future__ import annotations

import errno
import re
import resource
import sys
from pathlib import Path

from napari_sam.words import size_words

__all__ = ["MIN_ADDRESS_SPACE", "address_space_too_small", "available_memory",
           "is_out_of_memory", "out_of_memory_words"]

#: The least address-space limit (``ulimit -v``) a command that loads torch starts under: the
#: demo model's ``auto`` on a small stack needs about 1.3 GB; under about 0.8 GB, scipy's
#: OpenBLAS spins for good in its start-up when an allocation fails (no signal but SIGKILL
#: stops it there).
MIN_ADDRESS_SPACE = 1_200_000_000

#: Texts of the RuntimeErrors torch raises when an allocation fails (CPU, CUDA, MPS).
_RUNTIME_OOM = ("can't allocate memory", "out of memory", "not enough memory",
                "cannot allocate memory")
#: What the dynamic loader says when it cannot map a library: for want of memory (glibc's bare
#: text under ``ulimit -v``, or with ``: Cannot allocate memory``), but also on a ``noexec``
#: mount (``: Operation not permitted``).
_LOAD_FAILED = ("failed to map segment from shared object", "cannot map zero-fill pages")
#: Loader texts that are not memory, whatever else they say: a ``noexec`` mount, a file that
#: cannot be read, glibc's static TLS block (``cannot allocate memory in static TLS block``).
_LOAD_NOT_MEMORY = ("operation not permitted", "permission denied", "static tls")
_CGROUP = Path("/sys/fs/cgroup")
_PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_dirs() -> list[tuple[str, Path]]:
    """``(version, folder)`` of this process's memory cgroups (v2 unified, v1 memory)."""
    dirs = []
    try:
        lines = _PROC_SELF_CGROUP.read_text().splitlines()
    except OSError:
        return dirs
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":
            dirs.append(("v2", _CGROUP / rel.lstrip("/")))
        elif "memory" in controllers.split(","):
            dirs.append(("v1", _CGROUP / "memory" / rel.lstrip("/")))
            dirs.append(("v1", _CGROUP / "memory"))  # mounted at its own cgroup (a container)
    return dirs


def _with_parents(version: str, folder: Path) -> list[Path]:
    """``folder`` and its parents up to the cgroup root: a limit set higher up binds it too
    (SLURM on cgroup v2 sets it on ``job_N/`` and ``step_N/``; the task's own says ``max``)."""
    root = _CGROUP if version == "v2" else _CGROUP / "memory"
    levels = [folder]
    while folder != root and folder.is_relative_to(root) and folder.parent != folder:
        folder = folder.parent
        levels.append(folder)
    return levels


def _inactive_file(path: Path, key: str) -> int:
    """Bytes of inactive page cache (``key`` of ``memory.stat``): reclaimable, so free."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _level_room(version: str, folder: Path) -> int | None:
    """Bytes left under one cgroup's memory limit, else None (no limit, unreadable)."""
    if version == "v2":
        limit, used = _read_int(folder / "memory.max"), _read_int(folder / "memory.current")
        key = "inactive_file"
    else:
        limit = _read_int(folder / "memory.limit_in_bytes")
        used = _read_int(folder / "memory.usage_in_bytes")
        key = "total_inactive_file"
    if limit is None or used is None or limit >= 1 << 60:  # v1's "no limit"
        return None
    # usage counts the page cache of the files read (a batch's earlier inputs): the kernel
    # drops the inactive part before it fails an allocation (as docker stats, the kubelet)
    used = max(used - _inactive_file(folder / "memory.stat", key), 0)
    return max(limit - used, 0)


def _cgroup_room() -> int | None:
    """Bytes left under the tightest memory limit of this process's cgroups and their
    parents, else None."""
    rooms = [room for version, folder in _cgroup_dirs()
             for level in _with_parents(version, folder)
             if (room := _level_room(version, level)) is not None]
    return min(rooms) if rooms else None


def _address_space_room() -> int | None:
    """Bytes left under ``ulimit -v`` (``RLIMIT_AS``), else None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(soft - int(line.split()[1]) * 1024, 0)
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int | None:
    """Bytes of memory a new allocation can have in this process: the least of the machine's
    available memory, the room under its cgroup's limit and under its address-space limit.

    Returns
    -------
    int or None
        None where none of them can be read (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    rooms = [r for r in (_meminfo_available(), _cgroup_room(), _address_space_room())
             if r is not None]
    return min(rooms) if rooms else None


def device_room(device) -> tuple[int | None, str]:
    """Bytes a new tensor on ``device`` can have, and where, in words: a CUDA device's free
    memory (``torch.cuda.mem_get_info``: ``"free on cuda:0"``); the host's
    (:func:`available_memory`: ``"available here"``) for the CPU and MPS (whose memory is the
    host's). ``(None, ...)`` where it cannot be read."""
    dev = getattr(device, "type", None)
    if dev == "cuda":
        import torch

        try:  # (an index: torch before 2.5 refused torch.device("cuda"), what auto gives)
            index = getattr(device, "index", None)
            index = torch.cuda.current_device() if index is None else int(index)
            free = int(torch.cuda.mem_get_info(index)[0])
        except (RuntimeError, AssertionError, ValueError):  # not initialised, no driver
            return None, "free on the GPU"
        return free, f"free on cuda:{index}"
    return available_memory(), "available here"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation did not fit: a ``MemoryError``, torch's
    ``OutOfMemoryError``, or a ``RuntimeError`` of torch's allocators (CPU: ``DefaultCPUAllocator:
    can't allocate memory``; CUDA, MPS: ``out of memory``)."""
    if isinstance(exc, MemoryError) or _library_out_of_memory(exc) or _is_enomem(exc):
        return True
    torch = sys.modules.get("torch")  # not imported by us: an error of torch means it is loaded
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(exc, oom):
        return True
    if type(exc) is RuntimeError:
        text = str(exc).lower()
        return any(t in text for t in _RUNTIME_OOM)
    return False


def _address_space_limit() -> int | None:
    """The address-space limit (``ulimit -v``, ``RLIMIT_AS``) in bytes, else None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


def address_space_too_small(command: str) -> str | None:
    """The error of ``command`` (``napari-sam auto``, ...) when this process's address-space
    limit (``ulimit -v``, ``prlimit --as``) is below :data:`MIN_ADDRESS_SPACE`, else None."""
    limit = _address_space_limit()
    if limit is None or limit >= MIN_ADDRESS_SPACE:
        return None
    return (f"this process's address-space limit (ulimit -v {limit // 1024}, "
            f"{limit / 1e9:.2f} GB) is too small: {command} needs at least "
            f"{MIN_ADDRESS_SPACE / 1e9:.1f} GB of address space to load torch and the demo "
            "model (a few GB for SAM's models); raise it (e.g. ulimit -v unlimited) and run it "
            "again")


def _library_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a library (torch's, a codec's) that the dynamic loader could not map
    for want of memory: an ``ImportError`` or ``OSError`` (ctypes) whose text says "cannot
    allocate memory", or glibc's bare "failed to map segment from shared object" under an
    address-space limit (what ``ulimit -v`` gives); never one that says it was not permitted
    (a ``noexec`` mount) or names the static TLS block."""
    if not isinstance(exc, (ImportError, OSError)):
        return False
    text = str(exc).lower()
    if not any(t in text for t in _LOAD_FAILED) and not (
            "cannot allocate memory" in text and "shared object" in text):
        return False
    if any(t in text for t in _LOAD_NOT_MEMORY):
        return False
    return ("cannot allocate memory" in text or getattr(exc, "errno", None) == errno.ENOMEM
            or _address_space_limit() is not None)


def _is_enomem(exc: BaseException) -> bool:
    """An ``OSError`` ENOMEM that is no library load: a memory map (``numpy.load(...,
    mmap_mode="r")``), a thread or process that could not be made."""
    return isinstance(exc, OSError) and exc.errno == errno.ENOMEM and not (
        _library_out_of_memory(exc))


def _enomem_words() -> str:
    """``out of memory`` of a bare ENOMEM, with the address-space limit when there is one
    (``ulimit -v`` is what most often refuses a memory map)."""
    limit = _address_space_limit()
    if limit is None:
        return "out of memory"
    return (f"out of memory (under this process's address-space limit, ulimit -v "
            f"{limit // 1024} ({limit / 1e9:.2f} GB): raise it, e.g. ulimit -v unlimited)")


def _library_words(exc: BaseException) -> str:
    """``out of memory (...)`` of a library that could not be loaded: its name, the limit,
    and to raise the limit."""
    m = re.search(r"([\w.+-]+\.(?:so|dylib|pyd)[\w.]*)", str(exc))
    what = f"loading {m.group(1)}" if m else "loading a library"
    limit = _address_space_limit()
    if limit is None:
        return f"out of memory ({what} failed)"
    return (f"out of memory ({what} failed under this process's address-space limit, "
            f"ulimit -v {limit // 1024} ({limit / 1e9:.2f} GB); napari-sam and torch "
            "need a few GB of address space: raise it, e.g. ulimit -v unlimited)")


def out_of_memory_words(exc: BaseException) -> str:
    """``exc`` (for which :func:`is_out_of_memory` holds) in a few words, e.g. ``out of memory
    (an allocation of 46.3 MB failed)``; the size where the message gives it; for a library
    that could not be loaded under ``ulimit -v``, the library, the limit and to raise it; for
    an ``OSError`` ENOMEM (a memory map) the limit, when there is one, and to raise it."""
    if _library_out_of_memory(exc):
        return _library_words(exc)
    if _is_enomem(exc):
        return _enomem_words()
    text = str(exc)
    m = (re.search(r"allocate (\d+) bytes", text)
         or re.search(r"allocate ([\d.]+ ?[KMGT]i?B)", text))
    if m is None:
        return "out of memory"
    size = m.group(1)
    if size.isdigit():
        size = size_words(int(size))  # (not "0.0 MB")
    return f"out of memory (an allocation of {size} failed)"
