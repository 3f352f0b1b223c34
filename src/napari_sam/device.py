"""Device, precision and CPU thread choice: the one place every surface asks.

The predictor, stack embeddings, propagation, segment everything, the trainer, the CLI and the
GUI all resolve ``device="auto"`` and ``precision="auto"`` here, so a user gets one decision
and sees it (:func:`describe`). This module does not import torch at import time, so that
:func:`configure_threads` can set OpenMP's environment before torch is first imported.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import NamedTuple

from napari_sam.words import counted

__all__ = [
    "PRECISION_ENV",
    "THREADS_ENV",
    "BusyCores",
    "ThreadPlan",
    "autocast",
    "configure_threads",
    "cpu_bf16_feature",
    "describe",
    "measure_busy_cores",
    "one_cpu_thread",
    "precision_in_this_thread",
    "precision_name",
    "resolve_device",
    "resolve_precision",
    "slice_workers",
    "thread_policy",
]

logger = logging.getLogger(__name__)

#: Environment variable that sets what ``precision="auto"`` means for this process and its
#: child processes (``fp32``, ``bf16`` or ``fp16``); the CLI's ``--precision`` sets it.
PRECISION_ENV = "NAPARI_SAM_PRECISION"
#: Environment variable that fixes the number of CPU threads :func:`configure_threads` picks.
THREADS_ENV = "NAPARI_SAM_THREADS"

_NAMES = ("fp32", "bf16", "fp16")
_logged: set[tuple[str, str]] = set()
#: what ``"auto"`` means in one thread (:func:`precision_in_this_thread`), before the environment
_THIS_THREAD = threading.local()


@contextlib.contextmanager
def precision_in_this_thread(precision: str | None):
    """Within the block, ``precision="auto"`` means ``precision`` in this thread (before
    :data:`PRECISION_ENV`). A batch task on a cluster worker runs in it with the client's
    ``--precision``: the worker's environment is not the client's. ``"auto"`` or None
    changes nothing.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"} or None
    """
    if precision in (None, "auto"):
        yield
        return
    _check_name(precision)
    before = getattr(_THIS_THREAD, "precision", None)
    _THIS_THREAD.precision = precision
    try:
        yield
    finally:
        _THIS_THREAD.precision = before


def _dtypes() -> dict:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_name(dtype) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for a torch dtype."""
    for name, dt in _dtypes().items():
        if dt == dtype:
            return name
    raise ValueError(f"no precision name for {dtype}")


def _available_devices() -> list[str]:
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        names.insert(0, "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.insert(0 if "cuda" not in names else 1, "mps")
    return names


def resolve_device(device="auto", *, auto_hint: str = "device='auto'"):
    """Return the torch device to run on.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (or None) picks CUDA, then Apple MPS, then the CPU. An explicit
        device that is not available raises ``ValueError`` naming the available ones.
    auto_hint : str, optional
        How that message says to choose automatically: the Python argument by default, the
        command line passes ``"--device auto"``.

    Returns
    -------
    torch.device
    """
    import torch

    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device(_available_devices()[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    available = _available_devices()
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} was asked for but CUDA is not available here; "
                f"available devices: {', '.join(available)} (use {auto_hint})"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist: "
                f"{counted(torch.cuda.device_count(), 'CUDA device')}"
            )
    elif dev.type == "mps" and "mps" not in available:
        raise ValueError(
            f"device 'mps' was asked for but Apple MPS is not available here; "
            f"available devices: {', '.join(available)} (use {auto_hint})"
        )
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; available: {', '.join(available)}")
    return dev


# ---------------------------------------------------------------------------- precision


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags Linux lists (x86 ``flags``), empty where there is no such file."""
    try:
        text = Path(path).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def cpu_bf16_feature() -> str | None:
    """The CPU feature that gives native bfloat16 arithmetic, or None.

    Native means the CPU multiplies bf16 in hardware (x86 AVX-512 BF16 or AMX), which makes
    bf16 matrix products 2-4x faster than float32 ones; elsewhere PyTorch emulates bf16 and
    it is slower than float32. Asked from PyTorch's CPU feature detection (cpuinfo), else
    from ``/proc/cpuinfo``; never guessed from the vendor or model name.

    Returns
    -------
    str or None
        ``"amx_bf16"``, ``"avx512_bf16"`` or None.
    """
    try:
        import torch.cpu as tcpu

        amx = getattr(tcpu, "_is_amx_tile_supported", None)
        avx = getattr(tcpu, "_is_avx512_bf16_supported", None)
        if amx is not None and avx is not None:
            if amx():
                return "amx_bf16"
            return "avx512_bf16" if avx() else None
    except Exception:  # pragma: no cover - an old or unusual torch build
        pass
    flags = _cpuinfo_flags()
    for name in ("amx_bf16", "avx512_bf16"):
        if name in flags:
            return name
    return None


def _check_name(precision: str, where: str = "precision") -> str:
    if precision not in _NAMES:
        raise ValueError(
            f"unknown {where} {precision!r}; use one of 'auto', {', '.join(map(repr, _NAMES))}"
        )
    return precision


def _auto(device) -> tuple[str, str]:
    """(precision name, reason) that ``"auto"`` picks on ``device``."""
    import torch

    given = getattr(_THIS_THREAD, "precision", None)
    source = "the batch's --precision" if given else PRECISION_ENV
    env = given or os.environ.get(PRECISION_ENV, "").strip().lower()
    if env and env != "auto":
        _check_name(env, f"{PRECISION_ENV} value")
        if device.type == "mps" and env == "bf16":
            return "fp16", f"{source}=bf16 is not supported on MPS"
        return env, f"set by {source}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU supports bf16"
        return "fp32", "the GPU has no bf16"
    if device.type == "cpu":
        feature = cpu_bf16_feature()
        if feature:
            return "bf16", f"the CPU has native bf16 ({feature})"
        return "fp32", "the CPU has no native bf16"
    return "fp32", f"the default on {device.type}"


def resolve_precision(precision: str, device):
    """Return the compute dtype for ``precision`` on ``device``.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``"auto"`` is bfloat16 autocast on CUDA devices that support it and on CPUs with
        native bf16 arithmetic (:func:`cpu_bf16_feature`), float32 elsewhere (other CPUs,
        MPS). The environment variable :data:`PRECISION_ENV` replaces what ``"auto"`` means
        (the CLI's ``--precision`` sets it). The other values force a precision.
    device : torch.device

    Returns
    -------
    torch.dtype
        The choice made for ``"auto"`` is logged once per device type and precision.
    """
    if precision is None or precision == "auto":
        name, reason = _auto(device)
        key = (device.type, name)
        if key not in _logged:
            _logged.add(key)
            logger.info("precision %s on %s: %s", name, device.type, reason)
        return _dtypes()[name]
    _check_name(precision)
    if device.type == "mps" and precision == "bf16":
        raise ValueError("bf16 is not supported on MPS; use precision='fp16' or 'fp32'")
    return _dtypes()[precision]


def describe(device="auto", precision: str = "auto", chosen_by: str | None = None) -> str:
    """One line for the CLI banner and the GUI: the device, the precision and why.

    Parameters
    ----------
    device : str or torch.device
    precision : {"auto", "fp32", "bf16", "fp16"}
    chosen_by : str, optional
        Who chose an explicit ``precision`` (e.g. ``"--precision"``, ``"the session"``):
        the reason reads "set by ..." instead of "chosen".

    Returns
    -------
    str
        For example ``"cpu, bf16 (the CPU has native bf16 (avx512_bf16); 2 threads)"``.
    """
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    name = precision_name(dtype)
    why = (_auto(dev)[1] if precision in (None, "auto")
           else f"set by {chosen_by}" if chosen_by else "chosen")
    extra = ""
    if dev.type == "cpu":
        import torch

        extra = f"; {counted(torch.get_num_threads(), 'thread')}"
    return f"{dev}, {name} ({why}{extra})"


def autocast(device, dtype):
    """Autocast context for ``dtype`` on ``device`` (a no-op for float32)."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def one_cpu_thread(device):
    """Run the block with one torch CPU thread in the calling thread (a no-op off the CPU).

    For work made of many small operators, such as one click's decoder: each operator would
    wake the other (sleeping, ``OMP_WAIT_POLICY=PASSIVE``) threads, which cost more than they
    save (one click of ViT-B at 512 px on 2 cores: 31 ms median with one thread, 52 ms with
    two; docs/benchmarks.md, "Click to mask"). The thread count of torch's OpenMP pool is the
    calling thread's own setting, so other threads (an embedding job) keep theirs; it is
    restored on exit.
    """
    import torch

    before = torch.get_num_threads()
    if getattr(device, "type", str(device)) != "cpu" or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------- CPU threads


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _load() -> float:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # Windows
        return 0.0


def _cpu_jiffies(path: str = "/proc/stat", cpus=None) -> tuple[int, int, int] | None:
    """(busy, total, CPUs counted) from Linux's ``/proc/stat``, over the CPUs in ``cpus``
    (default: the CPUs this process may run on), None where there is no such file."""
    if cpus is None:
        try:
            cpus = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            cpus = None
    busy = total = n = 0
    try:
        with open(path) as f:
            for line in f:
                name, *vals = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                if cpus is not None and int(name[3:]) not in cpus:
                    continue
                fields = [int(v) for v in vals[:8]]  # user .. steal
                idle = fields[3] + fields[4]  # idle + iowait
                busy, total, n = busy + sum(fields) - idle, total + sum(fields), n + 1
    except (OSError, ValueError, IndexError):
        return None
    return (busy, total, n) if n else None


def _autogroups(path: str = "/proc/sys/kernel/sched_autogroup_enabled") -> bool:
    """Whether Linux shares the CPU between sessions first, then between their threads."""
    try:
        return Path(path).read_text().strip() == "1"
    except OSError:
        return False


def _stat_fields(path: str) -> list[str] | None:
    """The fields of a ``/proc/PID/stat`` file after the command name (state first)."""
    try:
        with open(path) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # gone meanwhile


def _session_pids(proc: str = "/proc") -> list[int]:
    """The other processes of this process's session (its autogroup)."""
    me, sid = os.getpid(), os.getsid(0)
    pids = []
    for entry in os.scandir(proc):
        if entry.name.isdigit() and int(entry.name) != me:
            fields = _stat_fields(f"{entry.path}/stat")
            if fields is not None and len(fields) > 12 and int(fields[3]) == sid:
                pids.append(int(entry.name))
    return pids


def _group_sample(pids: list[int] | None) -> tuple[int, float]:
    """(runnable threads, CPU seconds so far) of ``pids``; of the whole machine for None
    (runnable threads but this one, from ``/proc/loadavg``; no CPU seconds)."""
    if pids is None:
        try:
            with open("/proc/loadavg") as f:
                return max(0, int(f.read().split()[3].split("/")[0]) - 1), 0.0
        except (OSError, ValueError, IndexError):
            return 0, 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    running, jiffies = 0, 0
    for pid in pids:
        fields = _stat_fields(f"/proc/{pid}/stat")
        if fields is None or len(fields) <= 12:
            continue
        jiffies += int(fields[11]) + int(fields[12])  # utime, stime (all its threads)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            task = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
            running += task is not None and task[0] == "R"
    return running, jiffies / tick


class BusyCores(NamedTuple):
    """Cores other processes keep busy (:func:`measure_busy_cores`).

    Attributes
    ----------
    same_group : float
        Busy cores of processes that share the CPU with this one thread by thread: its own
        session when Linux groups the CPU by session (autogroup), else every process.
    other_groups : float
        Busy cores of the other sessions (autogroup only): they get their share of the
        machine whatever the number of our threads.
    """

    same_group: float
    other_groups: float


def measure_busy_cores(window: float = 0.2, path: str = "/proc/stat",
                       autogroup: bool | None = None, samples: int = 5) -> BusyCores | None:
    """How many of this process's cores other processes keep busy now, over ``window`` s.

    Other groups: the busy CPU time of the CPUs this process may run on (``/proc/stat``,
    read twice) minus this process's and its group's over the same window, so it sees a
    machine that became busy a moment ago (the 1-minute load average needs about a minute to
    follow). Our group (this session with Linux's autogroup scheduling,
    ``/proc/sys/kernel/sched_autogroup_enabled``; else the machine): its runnable threads,
    averaged over ``samples`` looks (what they would take, not what they got). None where
    there is no ``/proc/stat`` (macOS, Windows).

    Returns
    -------
    BusyCores or None
        Busy cores, each from 0 to the number of usable CPUs.
    """
    import time

    autogroup = _autogroups() if autogroup is None else autogroup
    first = _cpu_jiffies(path)
    if first is None:
        return None
    pids = _session_pids() if autogroup else None
    own0, t0 = sum(os.times()[:2]), time.monotonic()
    running, group0 = _group_sample(pids)
    for _ in range(max(1, samples) - 1):
        time.sleep(window / max(1, samples - 1))
        more, group1 = _group_sample(pids)
        running += more
    second = _cpu_jiffies(path)
    own1, t1 = sum(os.times()[:2]), time.monotonic()
    if second is None or second[2] != first[2] or second[1] <= first[1]:
        return None
    n_cpus, dt = second[2], max(t1 - t0, 1e-3)
    frac = (second[0] - first[0]) / (second[1] - first[1])
    group_used = (group1 - group0) / dt if samples > 1 else 0.0
    others = min(n_cpus, max(0.0, frac * n_cpus - (own1 - own0) / dt - group_used))
    same = min(float(n_cpus), running / max(1, samples))
    return BusyCores(same, float(others) if autogroup else 0.0)


class ThreadPlan(NamedTuple):
    """What :func:`thread_policy` chooses.

    Attributes
    ----------
    threads : int
        Torch (OpenMP) threads for work that runs one step after the other (propagation,
        linking, one image's embedding).
    workers : int
        Slices segmented at once by per-slice work (``napari-sam auto``), and chunks of a
        batched CPU decode at once (propagation: :mod:`napari_sam.decode_pool`): each worker
        thread runs with one torch thread.
    env : dict
        Variables to set before torch is imported (``OMP_WAIT_POLICY=PASSIVE``).
    reason : str
    """

    threads: int
    workers: int
    env: dict
    reason: str


#: Slice workers per usable core, at most. See :func:`thread_policy`.
MAX_WORKERS_PER_CORE = 2


def _user_threads(environ) -> tuple[int, str] | None:
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        raw = environ.get(var, "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a whole number of threads") from None
            if n < 1:
                raise ValueError(f"{var}={raw!r}: give at least 1 thread")
            return n, var
    return None


def thread_policy(cores: int, busy: float, environ=None, threads: int | None = None,
                  others: float = 0.0) -> ThreadPlan:
    """The CPU threads and slice workers for ``cores`` usable cores and the measured load.

    A pure function (tests call it with mocked measurements); :func:`configure_threads`
    applies it. Linux gives each runnable thread of one scheduling group (a session, with
    autogroup scheduling; else the whole machine) an equal share of a busy core, and each
    group an equal share of the machine. So:

    - torch threads: the cores nobody else keeps busy, at least one. OpenMP threads of one
      operation wait for each other at every step, so a thread on a core another thread
      wants holds the whole operation up (measured: 2 PASSIVE threads next to two spinners
      of our session made the main job 4x slower than 1 thread, docs/benchmarks.md);
    - slice workers: busy cores of our own group (``busy``, e.g. other jobs started from the
      same terminal) are shared thread by thread: with ``p`` busy threads next to ours, ``k``
      threads get about ``cores * k / (k + p)`` cores, so more threads get more of the
      machine, and slices are independent (a descheduled worker holds no other up): one
      worker per core not taken by other groups plus one per busy core of our group, at
      most ``MAX_WORKERS_PER_CORE * cores``. Other groups' busy cores (``others``) are
      taken whatever we do: no worker for them.

    Parameters
    ----------
    cores : int
        Cores this process may run on.
    busy : float
        Busy cores of other processes of our scheduling group (:func:`measure_busy_cores`).
    environ : mapping, optional
        The environment (default ``os.environ``): ``NAPARI_SAM_THREADS`` set by the user fixes
        both threads and workers; ``OMP_NUM_THREADS`` fixes the threads (one worker);
        ``OMP_WAIT_POLICY`` set by the user is kept.
    threads : int, optional
        The CLI's ``--threads``: wins over everything, like ``NAPARI_SAM_THREADS``.
    others : float
        Busy cores of other scheduling groups (or the 1-minute load average where nothing
        else is known).

    Returns
    -------
    ThreadPlan
        ``free = cores - round(others)`` (at least 1) and ``p = round(busy)``: ``threads =
        max(1, free - p)``, ``workers = min(MAX_WORKERS_PER_CORE * cores, free + p)``.
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    if "OMP_WAIT_POLICY" not in environ:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if threads is not None:
        if isinstance(threads, bool) or int(threads) < 1:
            raise ValueError(f"--threads {threads}: give at least 1 thread")
        return ThreadPlan(int(threads), int(threads), env, "set by --threads")
    user = _user_threads(environ)
    if user is not None:
        n, var = user
        return ThreadPlan(n, n if var == THREADS_ENV else 1, env, f"set by {var}")
    free = max(1, cores - max(0, int(math.floor(others + 0.5))))
    shared = max(0, int(math.floor(busy + 0.5)))
    return ThreadPlan(max(1, free - shared),
                      max(1, min(MAX_WORKERS_PER_CORE * cores, free + shared)), env,
                      f"{cores} cores; busy: {busy:.1f} shared thread by thread, "
                      f"{others:.1f} by other sessions")


_PLAN: ThreadPlan | None = None


def slice_workers() -> int:
    """Slice workers chosen by the last :func:`configure_threads` (1 if it was not called)."""
    return 1 if _PLAN is None else _PLAN.workers


def planned_workers() -> int | None:
    """Worker threads chosen by the last :func:`configure_threads` (None if it was not
    called): slices segmented at once, and chunks of a batched CPU decode at once
    (:mod:`napari_sam.decode_pool`)."""
    return None if _PLAN is None else _PLAN.workers


def configure_threads(*, environ=None, cores: int | None = None, busy: float | None = None,
                      others: float | None = None, load: float | None = None,
                      threads: int | None = None) -> int:
    """Choose the CPU threads so a busy machine does not make work several times slower.

    Call it first in a script or command (the CLI's ``main`` does), before ``import torch``:
    OpenMP reads ``OMP_WAIT_POLICY`` when torch loads. With torch's default (one thread per
    core, threads spinning at barriers) every parallel region waits for a thread whose core
    another process holds. :func:`thread_policy` chooses the torch threads and the slice
    workers (:func:`slice_workers`) from the cores busy now; see docs/benchmarks.md, "CPU
    threads".

    Parameters
    ----------
    environ : mutable mapping, optional
        Where to write the OpenMP settings (default ``os.environ``).
    cores : int, optional
        Usable cores (default: this process's).
    busy, others : float, optional
        Busy cores of our scheduling group and of other groups (default:
        :func:`measure_busy_cores`, else the 1-minute load average as ``others``). ``load``
        is ``others``, for older callers.
    threads : int, optional
        A user's choice (the CLI's ``--threads``).

    Returns
    -------
    int
        The number of threads torch will use.
    """
    global _PLAN
    environ = os.environ if environ is None else environ
    cores = _usable_cores() if cores is None else cores
    others = load if others is None else others
    if busy is None and others is None and threads is None and _user_threads(environ) is None:
        measured = measure_busy_cores()
        busy, others = (0.0, _load()) if measured is None else measured
    plan = thread_policy(cores, busy or 0.0, environ, threads, others or 0.0)
    for key, value in plan.env.items():
        environ.setdefault(key, value)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(plan.threads)
    else:
        environ["OMP_NUM_THREADS"] = str(plan.threads)
    _PLAN = plan
    logger.info("%s, %s: %s", counted(plan.threads, "CPU thread"),
                counted(plan.workers, "slice worker"), plan.reason)
    return plan.threads
