"""Fused GPU kernels (Triton), used when Triton is installed and the tensors are on CUDA.

Triton ships with PyTorch's CUDA wheels on Linux; nothing here is needed on the CPU, and every
caller has a plain PyTorch path that computes the same numbers. With the environment variable
``TRITON_INTERPRET=1`` the kernels also run on CPU tensors (slowly), which is how the tests
check them on machines without a GPU.
"""

from __future__ import annotations

import functools
import logging

import torch

__all__ = ["affine_layernorm_gelu_", "fused_kernels_work", "triton_available"]

logger = logging.getLogger(__name__)


@functools.cache
def triton_available() -> bool:
    """Whether Triton can be imported (it is optional)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install
        return False
    return True


@functools.cache
def fused_kernels_work(device: str) -> bool:
    """Whether the kernels compile and run on ``device`` (e.g. "cuda:0"), checked once per
    device on a tiny input. Triton can be installed yet unusable (no C compiler for its
    launcher, an old driver): then this logs why, once, and callers use their PyTorch path."""
    if not triton_available():
        return False
    try:
        dev = torch.device(device)
        g = torch.zeros(1, 1, 4 * 8, device=dev)
        shw, alpha = torch.zeros(1, 4 * 8, device=dev), torch.ones(1, 1, device=dev)
        cw, w, b = torch.zeros(4 * 8, device=dev), torch.ones(8, device=dev), torch.zeros(8, device=dev)
        affine_layernorm_gelu_(g, shw, alpha, cw, w, b, 1e-6, 0)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    except Exception as exc:  # any failure means: do not use the kernels here
        logger.warning("fused Triton kernels unavailable on %s (%s: %s); using PyTorch ops",
                       device, type(exc).__name__, exc)
        return False
    return True


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def affine_ln_gelu(
        g_ptr, shw_ptr, alpha_ptr, cw_ptr, w_ptr, b_ptr,
        M, K, HW, P0, eps,
        D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        rows = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        cols = tl.arange(0, BLOCK_D)
        rmask = rows < M
        cmask = cols < D
        mask = rmask[:, None] & cmask[None, :]
        grp = rows % 4  # sub-pixel (a, b) of the first transposed convolution
        pixel = P0 + (rows // 4) % K  # embedding pixel
        img = rows // (4 * K)  # prompt
        g = tl.load(g_ptr + rows[:, None] * D + cols[None, :], mask=mask, other=0.0)
        s = tl.load(shw_ptr + pixel[:, None] * (4 * D) + grp[:, None] * D + cols[None, :],
                    mask=mask, other=0.0)
        a = tl.load(alpha_ptr + img * HW + pixel, mask=rmask, other=0.0)
        c = tl.load(cw_ptr + grp[:, None] * D + cols[None, :], mask=mask, other=0.0)
        v = tl.where(mask, a[:, None] * (g + s) + c, 0.0)
        mean = tl.sum(v, axis=1) / D
        d = tl.where(mask, v - mean[:, None], 0.0)
        var = tl.sum(d * d, axis=1) / D
        rstd = 1.0 / tl.sqrt(var + eps)
        w = tl.load(w_ptr + cols, mask=cmask, other=0.0)
        b = tl.load(b_ptr + cols, mask=cmask, other=0.0)
        y = d * rstd[:, None] * w[None, :] + b[None, :]
        y = 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))  # exact (erf) GELU
        tl.store(g_ptr + rows[:, None] * D + cols[None, :], y, mask=mask)

    return triton, affine_ln_gelu


def affine_layernorm_gelu_(
    g: torch.Tensor,
    shw: torch.Tensor,
    alpha: torch.Tensor,
    cw: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    p0: int,
) -> torch.Tensor:
    """In place: ``g <- GELU(LayerNorm_D(alpha * (g + shw) + cw))`` in one pass.

    The first half of SAM's upscaling head as :class:`napari_sam.automatic.GridDecoder`
    computes it, per prompt ``i``, embedding pixel ``p`` and sub-pixel ``s`` (4 of them).

    Parameters
    ----------
    g : (N, K, 4 * D) float32, contiguous
        Low-rank products for N prompts and K pixels (pixels ``p0 .. p0 + K`` of the
        embedding), channels ordered (sub-pixel, channel).
    shw : (HW, 4 * D) float32, contiguous
        The prompt-independent term, for every embedding pixel.
    alpha : (N, HW) float32, contiguous
        Per-prompt, per-pixel scales.
    cw : (4 * D,) float32
        Constant term.
    weight, bias : (D,) float32
        The layer norm's affine parameters.
    eps : float
    p0 : int
        First embedding pixel of ``g``.

    Returns
    -------
    g, overwritten.
    """
    n, k, d4 = g.shape
    d = d4 // 4
    hw = shw.shape[0]
    for name, t, shape in (("g", g, (n, k, 4 * d)), ("shw", shw, (hw, 4 * d)),
                           ("alpha", alpha, (n, hw)), ("cw", cw, (4 * d,)),
                           ("weight", weight, (d,)), ("bias", bias, (d,))):  # fmt: skip
        if tuple(t.shape) != shape or t.dtype != torch.float32 or not t.is_contiguous():
            raise ValueError(
                f"{name}: expected a contiguous float32 tensor of shape {shape}, got "
                f"{t.dtype} {tuple(t.shape)}"
            )
    triton, kernel = _kernel()
    m = n * k * 4
    block_m = 32
    grid = (triton.cdiv(m, block_m),)
    kernel[grid](
        g, shw, alpha, cw, weight, bias, m, k, hw, int(p0), float(eps),
        D=d, BLOCK_D=triton.next_power_of_2(d), BLOCK_M=block_m,
    )  # fmt: skip
    return g
