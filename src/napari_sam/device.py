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
from pathlib import Path

__all__ = [
    "PRECISION_ENV",
    "THREADS_ENV",
    "autocast",
    "configure_threads",
    "cpu_bf16_feature",
    "describe",
    "precision_name",
    "resolve_device",
    "resolve_precision",
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


def resolve_device(device="auto"):
    """Return the torch device to run on.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (or None) picks CUDA, then Apple MPS, then the CPU. An explicit
        device that is not available raises ``ValueError`` naming the available ones.

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
                f"available devices: {', '.join(available)} (use device='auto')"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps" and "mps" not in available:
        raise ValueError(
            f"device 'mps' was asked for but Apple MPS is not available here; "
            f"available devices: {', '.join(available)}"
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

    env = os.environ.get(PRECISION_ENV, "").strip().lower()
    if env and env != "auto":
        _check_name(env, f"{PRECISION_ENV} value")
        if device.type == "mps" and env == "bf16":
            return "fp16", f"{PRECISION_ENV}=bf16 is not supported on MPS"
        return env, f"set by {PRECISION_ENV}"
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


def describe(device="auto", precision: str = "auto") -> str:
    """One line for the CLI banner and the GUI: the device, the precision and why.

    Parameters
    ----------
    device : str or torch.device
    precision : {"auto", "fp32", "bf16", "fp16"}

    Returns
    -------
    str
        For example ``"cpu, bf16 (the CPU has native bf16 (avx512_bf16); 2 threads)"``.
    """
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    name = precision_name(dtype)
    why = _auto(dev)[1] if precision in (None, "auto") else "chosen"
    extra = ""
    if dev.type == "cpu":
        import torch

        extra = f"; {torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}"
    return f"{dev}, {name} ({why}{extra})"


def autocast(device, dtype):
    """Autocast context for ``dtype`` on ``device`` (a no-op for float32)."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def thread_policy(cores: int, load: float, environ=None) -> tuple[int, dict[str, str], str]:
    """The CPU thread count and OpenMP settings for ``cores`` usable cores at ``load``.

    A pure function (tests call it with a mocked load); :func:`configure_threads` applies it.

    Parameters
    ----------
    cores : int
        Cores this process may run on.
    load : float
        One-minute load average of the machine (other processes' runnable threads).
    environ : mapping, optional
        The environment (default ``os.environ``): ``NAPARI_SAM_THREADS`` or
        ``OMP_NUM_THREADS`` set by the user win; ``OMP_WAIT_POLICY`` set by the user is kept.

    Returns
    -------
    threads : int
        Free cores (``cores - round(load)``), at least 1, at most ``cores``.
    env : dict
        Variables to set before torch is imported: ``OMP_WAIT_POLICY=PASSIVE`` (a thread
        waiting at a barrier sleeps instead of spinning on a core another thread needs).
    reason : str
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    if "OMP_WAIT_POLICY" not in environ:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        raw = environ.get(var, "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a whole number of threads") from None
            if n < 1:
                raise ValueError(f"{var}={raw!r}: give at least 1 thread")
            return n, env, f"set by {var}"
    busy = max(0, int(math.floor(load + 0.5)))
    threads = max(1, min(cores, cores - busy))
    return threads, env, f"{cores} cores, load {load:.1f}"


def configure_threads(*, environ=None, cores: int | None = None, load: float | None = None) -> int:
    """Choose the CPU thread count so a busy machine does not make work several times slower.

    Call it first in a script or command (the CLI's ``main`` does), before ``import torch``:
    OpenMP reads ``OMP_WAIT_POLICY`` when torch loads. With torch's default (one thread per
    core, threads spinning at barriers) every parallel region waits for a thread whose core
    another process holds; using only the free cores avoids that (see docs/benchmarks.md,
    "CPU threads").

    Parameters
    ----------
    environ : mutable mapping, optional
        Where to write the OpenMP settings (default ``os.environ``).
    cores, load : optional
        Usable cores and one-minute load average (default: this machine's).

    Returns
    -------
    int
        The number of threads torch will use.
    """
    environ = os.environ if environ is None else environ
    cores = _usable_cores() if cores is None else cores
    load = _load() if load is None else load
    threads, env, reason = thread_policy(cores, load, environ)
    for key, value in env.items():
        environ.setdefault(key, value)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        environ["OMP_NUM_THREADS"] = str(threads)
    logger.info("%d CPU thread(s): %s", threads, reason)
    return threads
