"""The fused Triton kernel of GridDecoder's upscaling head (napari_sam.kernels).

On CUDA it is checked by tests/test_cuda.py; here, where Triton is installed, in Triton's
interpreter (TRITON_INTERPRET=1, CPU tensors), in a child process because the variable must be
set before Triton is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from napari_sam.kernels import affine_layernorm_gelu_, triton_available

TESTS = Path(__file__).resolve().parent


def test_affine_layernorm_gelu_names_a_wrong_input():
    g = torch.zeros(2, 5, 4 * 8)
    shw, alpha, cw = torch.zeros(30, 32), torch.zeros(2, 30), torch.zeros(32)
    w = b = torch.zeros(8)
    with pytest.raises(ValueError, match=r"alpha: expected a contiguous float32 tensor of shape \(2, 30\)"):
        affine_layernorm_gelu_(g, shw, alpha[:, :20], cw, w, b, 1e-6, 0)
    with pytest.raises(ValueError, match="shw: expected a contiguous float32"):
        affine_layernorm_gelu_(g, shw.double(), alpha, cw, w, b, 1e-6, 0)


def test_fused_head_is_opt_in_through_the_environment():
    import subprocess
    import sys

    code = "import napari_sam.automatic as a; print(a.GRID_FUSED_HEAD_CUDA)"
    for env, expected in (({}, "False"), ({"NAPARI_SAM_TRITON": "1"}, "True")):
        import os

        full = {k: v for k, v in os.environ.items() if k != "NAPARI_SAM_TRITON"} | env
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=full, timeout=120)
        assert out.stdout.strip() == expected, out.stderr


def test_grid_decoder_uses_the_fused_head_only_where_it_applies(monkeypatch):
    from napari_sam import automatic, kernels
    from napari_sam.automatic import GridDecoder
    from napari_sam.models import SamConfig, build_sam
    from tiny_configs import TINY_VIT

    sam = build_sam(SamConfig(**TINY_VIT))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(kernels, "fused_kernels_work", lambda device: True)
    # opt-in (NAPARI_SAM_TRITON=1): importing Triton crashes napari on Mesa displays (#22)
    monkeypatch.setattr(automatic.grid_decoder, "GRID_FUSED_HEAD_CUDA", False)
    assert not GridDecoder(sam)._use_fused_head(cuda)
    monkeypatch.setattr(automatic.grid_decoder, "GRID_FUSED_HEAD_CUDA", True)
    assert not GridDecoder(sam)._use_fused_head(cpu)  # CPU: PyTorch ops unless forced
    assert GridDecoder(sam)._use_fused_head(cuda)
    assert GridDecoder(sam, precision="tf32")._use_fused_head(cuda)
    assert not GridDecoder(sam, fused_head=False)._use_fused_head(cuda)
    assert GridDecoder(sam, fused_head=True)._use_fused_head(cpu)
    monkeypatch.setattr(kernels, "fused_kernels_work", lambda device: False)
    assert not GridDecoder(sam, fused_head=True)._use_fused_head(cpu)


def test_a_triton_that_cannot_compile_falls_back_with_a_warning(monkeypatch, caplog):
    """Triton installed but unusable (no C compiler for its launcher, say): the check says
    no, names the reason once, and GridDecoder keeps its PyTorch head."""
    from napari_sam import kernels

    def broken(*args, **kwargs):
        raise RuntimeError("Failed to find C compiler")

    monkeypatch.setattr(kernels, "triton_available", lambda: True)
    monkeypatch.setattr(kernels, "affine_layernorm_gelu_", broken)
    with caplog.at_level("WARNING", logger="napari_sam.kernels"):
        assert kernels.fused_kernels_work.__wrapped__("cpu") is False
    assert "Failed to find C compiler" in caplog.text and "PyTorch ops" in caplog.text
    monkeypatch.setattr(kernels, "triton_available", lambda: False)
    assert kernels.fused_kernels_work.__wrapped__("cpu") is False  # no Triton: no attempt


_INTERPRETED = textwrap.dedent(
    """
    import torch, torch.nn.functional as F
    from napari_sam.automatic import GridDecoder
    from napari_sam.kernels import affine_layernorm_gelu_
    from napari_sam.models import SamConfig, build_sam
    from tiny_configs import TINY_VIT

    torch.manual_seed(0)
    # the kernel alone, against the four PyTorch steps it replaces (odd sizes, offset tile)
    n, k, d, hw, p0 = 3, 21, 24, 50, 7
    g = torch.randn(n, k, 4 * d)
    shw, alpha, cw = torch.randn(hw, 4 * d), torch.rand(n, hw) + 0.5, torch.randn(4 * d)
    w, b = torch.randn(d), torch.randn(d)
    ref = alpha[:, p0:p0 + k, None] * (g + shw[p0:p0 + k]) + cw
    ref = F.gelu(F.layer_norm(ref.view(n, k * 4, d), (d,), w, b, 1e-6)).view(n, k, 4 * d)
    out = affine_layernorm_gelu_(g.clone(), shw, alpha, cw, w, b, 1e-6, p0)
    err = (out - ref).abs().max().item()
    assert err < 1e-5, err
    # the whole decoder, fused against PyTorch ops
    sam = build_sam(SamConfig(**{**TINY_VIT, "decoder_depth": 2}))
    with torch.no_grad():
        for p in sam.mask_decoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    e = sam.embedding_size
    feats = torch.randn(256, e, e)
    pts = torch.rand(7, 2) * sam.img_size
    logits = {}
    for fused in (False, True):
        dec = GridDecoder(sam, fused_head=fused, pixel_tile=40)  # several pixel tiles
        assert dec._use_fused_head(torch.device("cpu")) is fused
        shared = dec.prepare(feats)
        logits[fused] = dec.masks(shared, dec.tokens(shared, pts), torch.tensor([5, 0, 6]))
    scale = logits[False].abs().max().item()
    err = (logits[True] - logits[False]).abs().max().item()
    assert err < 1e-4 * scale, (err, scale)
    print("ok", err, scale)
    """
)


@pytest.mark.skipif(
    not triton_available(),
    reason="Triton is not installed here: the fused GPU head is checked on a lent GPU "
    "(tests/test_cuda.py) and in Triton's interpreter wherever Triton is installed",
)
def test_fused_head_in_the_triton_interpreter_equals_pytorch():
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _INTERPRETED], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")
