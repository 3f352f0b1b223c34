"""The grid decoder reads R's projections from the token values (#22, session 39): the same
numbers as ``R @ W``, and fewer multiply-adds per prompt for the demo model."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_sam.automatic.grid_decoder import GridDecoder


def _decoder_and_state(model, n: int = 6):
    torch.manual_seed(0)
    dec = GridDecoder(model, precision="fp32")
    e = int(model.embedding_size)
    shared = dec.prepare(torch.randn(int(model.mask_decoder.iou_token.weight.shape[1]), e, e))
    pts = torch.rand(n, 2) * model.img_size
    return dec, shared, pts


def test_projections_from_token_values_equal_r_times_the_weights(tiny_sam):
    """What the token path and the upscaling head read instead of ``R @ W``: within float
    rounding of the products of the stored rows ``rm``."""
    from napari_sam.automatic import grid_decoder as gd

    dec, shared, pts = _decoder_and_state(tiny_sam)
    state = dec.tokens(shared, pts)
    r = state.rm.shape[1]
    fa = shared["final"]
    for maps, w in ((fa["k_proj"], fa["attn"].k_proj.weight.T),
                    (fa["v_proj"], fa["attn"].v_proj.weight.T),
                    (shared["wf_maps"], shared["wf"])):
        with torch.inference_mode():
            got = gd._r_project({"vt": state.vt}, maps, r)
            want = state.rm @ w
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_demo_model_multiply_adds_per_prompt():
    """The demo model at 256 px (32 x 32 embedding): the token path costs at most 104 M
    floating-point operations per prompt (142.5 M when R's projections were products of its
    (r, 256) rows, 118.0 M with r = 114 rows before each head's last softmax row was folded
    into the constant row, r = 98 now) and the upscaling head at most 124 M per prompt (145 M,
    then 130.9 M)."""
    import napari_sam as ns

    dec, shared, pts = _decoder_and_state(ns.load_model("demo"), n=32)
    with FlopCounterMode(display=False) as fc:
        state = dec.tokens(shared, pts)
    assert state.lt.shape[1] == 98
    assert fc.get_total_flops() / len(pts) <= 104e6
    with FlopCounterMode(display=False) as fc:
        dec.masks(shared, state, torch.arange(16))
    assert fc.get_total_flops() / 16 <= 124e6
