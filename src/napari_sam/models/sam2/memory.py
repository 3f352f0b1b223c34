"""SAM 2's memory: the memory encoder (a slice's features fused with its predicted mask)
and memory attention (the current slice's features attending to the memories of earlier
slices and to object pointers, with 2D rotary position encoding).

Shapes: image features of the current slice are tokens (B, HW, D) with D = 256 and
HW = 64 x 64 at 1024 px input; memories are (B, M, D_mem) tokens with D_mem = 64: for every
remembered slice its HW spatial tokens, then the object pointers (each D-dim pointer split
into D / D_mem tokens), which get no rotary encoding. Parameter names are Meta's
(``memory_encoder.*``, ``memory_attention.*``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import LayerNorm2d
from .hiera import SineEmbedding2d

__all__ = [
    "MemoryAttention",
    "MemoryEncoder",
    "RotaryAttention",
    "axial_rotations",
]


# ----------------------------------------------------------------------------- encoder
class MaskDownSampler(nn.Module):
    """(B, 1, 16E, 16E) mask -> (B, D, E, E): four stride-2 3 x 3 convolutions (channels
    x4 each, LayerNorm2d and GELU after each), then a 1 x 1 projection (``encoder.i``)."""

    def __init__(self, embed_dim: int = 256, layers: int = 4):
        super().__init__()
        self.encoder = nn.Sequential()
        channels = 1
        for _ in range(layers):
            self.encoder.append(nn.Conv2d(channels, channels * 4, 3, stride=2, padding=1))
            self.encoder.append(LayerNorm2d(channels * 4))
            self.encoder.append(nn.GELU())
            channels *= 4
        self.encoder.append(nn.Conv2d(channels, embed_dim, kernel_size=1))

    def forward(self, mask: Tensor) -> Tensor:
        return self.encoder(mask)


class ConvNextBlock(nn.Module):
    """A ConvNeXt block: 7 x 7 depthwise convolution, LayerNorm, MLP (x4), layer scale,
    residual; (B, C, H, W) in and out."""

    def __init__(self, dim: int = 256):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """Two ConvNeXt blocks (``layers.i``)."""

    def __init__(self, dim: int = 256, layers: int = 2):
        super().__init__()
        self.layers = nn.ModuleList(ConvNextBlock(dim) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """A slice's memory from its image features and its predicted mask.

    Parameters
    ----------
    out_dim : int
        Memory channels D_mem (64).
    in_dim : int
        Image feature channels D (256).
    """

    def __init__(self, out_dim: int = 64, in_dim: int = 256):
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)
        self.position_encoding = SineEmbedding2d(out_dim)

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, D, E, E), mask (B, 1, 16E, 16E) already squashed to [0, 1]
        -> memory (B, D_mem, E, E) and its position encoding (B, D_mem, E, E)."""
        x = self.pix_feat_proj(features) + self.mask_downsampler(mask)
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x).to(x.dtype)


# ----------------------------------------------------------------------------- attention
def axial_rotations(dim: int, width: int, height: int, theta: float = 10000.0) -> Tensor:
    """Unit complex rotations for 2D rotary encoding: (width * height, dim / 2) complex64;
    the first dim / 4 frequencies rotate by the column, the rest by the row (row-major)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(width * height, dtype=torch.float32)
    cols, rows = t % width, torch.div(t, width, rounding_mode="floor")
    angles = torch.cat([torch.outer(cols, freqs), torch.outer(rows, freqs)], dim=-1)
    return torch.polar(torch.ones_like(angles), angles)


def _rotate(x: Tensor, rotations: Tensor) -> Tensor:
    """Rotate consecutive channel pairs of (B, heads, N, C) by (N, C / 2) rotations."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotations).flatten(3).type_as(x)


class RotaryAttention(nn.Module):
    """Attention with 2D rotary position encoding of queries and keys.

    Keys may hold several slices' tokens (``repeat_keys``: the rotations repeat per
    slice); the last ``unrotated`` keys (object pointers) are not rotated.
    """

    def __init__(self, dim: int = 256, kv_dim: int | None = None, num_heads: int = 1,
                 repeat_keys: bool = False, theta: float = 10000.0,
                 feature_size: int = 64):
        super().__init__()
        kv_dim = dim if kv_dim is None else kv_dim
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_dim, dim)
        self.v_proj = nn.Linear(kv_dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.repeat_keys = repeat_keys
        self.theta = theta
        self._rotations = axial_rotations(dim // num_heads, feature_size, feature_size, theta)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def rotations(self, tokens: int, device) -> Tensor:
        """Rotations for a square grid of ``tokens`` queries (recomputed for a new size)."""
        if self._rotations.shape[0] != tokens:
            side = math.isqrt(tokens)
            self._rotations = axial_rotations(self.q_proj.out_features // self.num_heads,
                                              side, side, self.theta)
        if self._rotations.device != torch.device(device):
            self._rotations = self._rotations.to(device)
        return self._rotations

    def forward(self, q: Tensor, k: Tensor, v: Tensor, unrotated: int = 0) -> Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), \
            self._heads(self.v_proj(v))
        rot = self.rotations(q.shape[-2], q.device)
        q = _rotate(q, rot)
        n_rot = k.shape[-2] - unrotated
        if n_rot > 0:
            rot_k = rot.repeat(n_rot // q.shape[-2], 1) if self.repeat_keys else rot
            k = torch.cat([_rotate(k[:, :, :n_rot], rot_k), k[:, :, n_rot:]], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class MemoryAttentionLayer(nn.Module):
    """Self-attention of the slice's tokens, cross-attention to the memory (position
    encoding added to the memory keys), then an MLP; pre-norm residuals."""

    def __init__(self, dim: int = 256, kv_dim: int = 64, hidden: int = 2048):
        super().__init__()
        self.self_attn = RotaryAttention(dim)
        self.cross_attn_image = RotaryAttention(dim, kv_dim, repeat_keys=True)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, memory: Tensor, memory_pos: Tensor, unrotated: int) -> Tensor:
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y)
        y = self.norm2(x)
        x = x + self.cross_attn_image(y, memory + memory_pos, memory, unrotated)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    """Condition a slice's features on memories: (B, HW, D) tokens with their position
    encoding and (B, M, D_mem) memory tokens with theirs -> (B, HW, D)."""

    def __init__(self, dim: int = 256, kv_dim: int = 64, layers: int = 4):
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(dim, kv_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, tokens_pos: Tensor, memory: Tensor,
                memory_pos: Tensor, pointer_tokens: int = 0) -> Tensor:
        x = tokens + 0.1 * tokens_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, pointer_tokens)
        return self.norm(x)
