"""Device and precision selection shared by the predictor, embeddings, trainer and CLI."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["resolve_device", "resolve_precision", "autocast"]

_PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names.insert(0, "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.insert(0 if "cuda" not in names else 1, "mps")
    return names


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return the torch device to run on.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (or None) picks CUDA, then Apple MPS, then the CPU. An explicit
        device that is not available raises ``ValueError`` naming the available ones.
    """
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


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Return the compute dtype for ``precision`` on ``device``.

    ``"auto"`` is bfloat16 autocast on CUDA devices that support it and float32 elsewhere
    (CPU and MPS); ``"fp32"``, ``"bf16"`` and ``"fp16"`` force a precision.
    """
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        dtype = _PRECISIONS[precision]
    except KeyError:
        raise ValueError(
            f"unknown precision {precision!r}; use one of 'auto', {', '.join(map(repr, _PRECISIONS))}"
        ) from None
    if device.type == "mps" and dtype is torch.bfloat16:
        raise ValueError("bf16 is not supported on MPS; use precision='fp16' or 'fp32'")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast context for ``dtype`` on ``device`` (a no-op for float32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
