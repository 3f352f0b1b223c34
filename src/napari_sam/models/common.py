"""Layers shared by the image encoders, the prompt encoder and the mask decoder.

State-dict keys match Meta's ``segment_anything.modeling.common`` (``LayerNorm2d``,
``MLPBlock``) so official checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LayerNorm2d", "MLPBlock", "neck"]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor (SAM's ``LayerNorm2d``)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W), normalised per pixel over C."""
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) * torch.rsqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    """Two linear layers with an activation: (..., D) -> (..., D) (keys ``lin1``, ``lin2``)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


def neck(in_chans: int, out_chans: int) -> nn.Sequential:
    """SAM's encoder neck: (B, in_chans, E, E) -> (B, out_chans, E, E).

    A 1x1 conv, LayerNorm2d, a 3x3 conv and LayerNorm2d, without biases (keys ``0`` to ``3``,
    as ``image_encoder.neck`` in Meta's checkpoints).
    """
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False),
        LayerNorm2d(out_chans),
        nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_chans),
    )
