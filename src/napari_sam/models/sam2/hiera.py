"""SAM 2's image encoder: the Hiera trunk, its FPN neck and the sine position encoding.

Hiera (Ryali et al. 2023) is a hierarchical ViT: a 7 x 7 stride-4 patch embedding, then four
stages of transformer blocks; the first block of stages 2-4 halves the resolution by max
pooling its queries (and doubles the channels and heads). Blocks attend within windows
(``window_spec`` per stage) except the ``global_blocks``. The neck projects each stage to
``d_model`` channels and adds the coarser level, upsampled, into the finer ones
(``top_down_levels``); SAM 2 drops the coarsest level (``scalp=1``).

For a (B, 3, 1024, 1024) input the encoder returns, finest first, features of
(B, 256, 256, 256), (B, 256, 128, 128) and (B, 256, 64, 64) with sine position encodings of
the same shapes. Parameter names are those of Meta's ``sam2`` checkpoints
(``image_encoder.trunk.*``, ``image_encoder.neck.*``), so official files load unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FpnNeck",
    "Hiera",
    "HieraConfig",
    "HieraImageEncoder",
    "SineEmbedding2d",
]


@dataclass(frozen=True)
class HieraConfig:
    """The shape of a Hiera trunk (the four official SAM 2.1 sizes are in ``sam2.config``).

    Attributes
    ----------
    embed_dim, num_heads : int
        Channels and attention heads of stage 1 (doubled at every later stage).
    stages : tuple of int
        Blocks per stage (four stages).
    global_blocks : tuple of int
        Indices of the blocks (counted over all stages) that attend globally.
    window_spec : tuple of int
        Attention window size per stage, in tokens of that stage.
    background_pos_size : tuple of int
        (rows, cols) of the learned background position embedding, interpolated to the
        token grid; a per-window embedding of ``window_spec[0]`` is tiled over it.
    q_pool : int
        How many stage transitions pool their queries (3: every one).
    """

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    background_pos_size: tuple[int, int] = (7, 7)
    q_pool: int = 3

    @property
    def stage_ends(self) -> list[int]:
        """Index of the last block of each stage."""
        return [sum(self.stages[: i + 1]) - 1 for i in range(len(self.stages))]

    @property
    def channels(self) -> list[int]:
        """Output channels of each stage, finest first."""
        return [self.embed_dim * 2**i for i in range(len(self.stages))]


def _pool_tokens(x: Tensor, pool: nn.Module | None) -> Tensor:
    """Max-pool a (B, H, W, C) token grid with ``pool`` (an ``nn.MaxPool2d``) or pass it."""
    if pool is None:
        return x
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def partition_windows(x: Tensor, size: int) -> tuple[Tensor, tuple[int, int]]:
    """Cut a (B, H, W, C) grid into (B * nW, size, size, C) windows, zero-padding the
    bottom and right edges; returns the windows and the padded (Hp, Wp)."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % size, (-w) % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // size, size, wp // size, size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, size, size, c), (hp, wp)


def merge_windows(windows: Tensor, size: int, padded: tuple[int, int],
                  shape: tuple[int, int]) -> Tensor:
    """Inverse of :func:`partition_windows`: (B * nW, size, size, C) -> (B, H, W, C)."""
    hp, wp = padded
    h, w = shape
    b = windows.shape[0] // (hp * wp // size // size)
    x = windows.reshape(b, hp // size, wp // size, size, size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :] if (hp > h or wp > w) else x


class Mlp(nn.Module):
    """Linear layers with an activation between them (``layers.0``, ``layers.1``, ...)."""

    def __init__(self, dims: list[int], activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


class PooledAttention(nn.Module):
    """Multi-head attention over a (B, H, W, C) grid whose queries may be max-pooled
    (``q_pool``), which halves the output grid."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None):
        super().__init__()
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = torch.unbind(qkv, 2)
        if self.q_pool is not None:
            q = _pool_tokens(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class HieraBlock(nn.Module):
    """One Hiera block: (windowed) attention and an MLP, each with a residual; a block that
    changes the channels projects and pools its shortcut too."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, window: int,
                 q_stride: tuple[int, int] | None):
        super().__init__()
        self.dim, self.dim_out, self.window = dim, dim_out, window
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.pool = nn.MaxPool2d(q_stride, q_stride) if q_stride else None
        self.attn = PooledAttention(dim, dim_out, num_heads, self.pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = Mlp([dim_out, 4 * dim_out, dim_out])
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = _pool_tokens(self.proj(x), self.pool)
        size = self.window
        if size > 0:
            shape = x.shape[1:3]
            x, padded = partition_windows(x, size)
        x = self.attn(x)
        if self.q_stride:  # the queries were pooled: so were the windows
            size = self.window // self.q_stride[0]
            shape = shortcut.shape[1:3]
            padded = (shape[0] + (-shape[0]) % size, shape[1] + (-shape[1]) % size) \
                if size > 0 else shape
        if self.window > 0:
            x = merge_windows(x, size, padded, shape)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """The 7 x 7, stride-4 convolution that turns (B, 3, H, W) into (B, H/4, W/4, C)."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """The Hiera trunk: (B, 3, H, W) -> one (B, C_i, H_i, W_i) feature map per stage."""

    def __init__(self, config: HieraConfig):
        super().__init__()
        self.config = config
        dim, heads = config.embed_dim, config.num_heads
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *config.background_pos_size))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, dim, config.window_spec[0], config.window_spec[0]))
        ends = config.stage_ends
        pooled = [e + 1 for e in ends[:-1]][: config.q_pool]
        self.blocks = nn.ModuleList()
        stage = 0
        for i in range(sum(config.stages)):
            dim_out = dim
            window = 0 if i in config.global_blocks else config.window_spec[stage]
            if i - 1 in ends:  # first block of a stage: it pools the previous stage's
                dim_out, heads, stage = dim * 2, heads * 2, stage + 1  # windows in half
            self.blocks.append(HieraBlock(dim, dim_out, heads, window,
                                          (2, 2) if i in pooled else None))
            dim = dim_out

    def position_embedding(self, hw: tuple[int, int]) -> Tensor:
        """(1, H, W, C): the background embedding (bicubic to ``hw``) plus the tiled
        window embedding."""
        pos = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        window = self.pos_embed_window
        pos = pos + window.tile([p // w for p, w in zip(pos.shape, window.shape)])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.patch_embed(x)
        x = x + self.position_embedding(x.shape[1:3])
        ends = set(self.config.stage_ends)
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in ends:
                out.append(x.permute(0, 3, 1, 2))
        return out


class SineEmbedding2d(nn.Module):
    """The normalised sine/cosine position encoding of a (B, C, H, W) map: (B, C, H, W),
    the first C/2 channels from the row, the rest from the column (no parameters)."""

    def __init__(self, channels: int, temperature: float = 10000.0):
        super().__init__()
        self.half = channels // 2
        self.temperature = temperature
        self._cache: dict[tuple[int, int], Tensor] = {}

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pe = self._cache.get((h, w))
        if pe is None or pe.device != x.device:
            pe = self._cache[(h, w)] = self._encode(h, w, x.device)
        return pe[None].expand(x.shape[0], -1, -1, -1)

    def _encode(self, h: int, w: int, device) -> Tensor:
        eps, scale = 1e-6, 2 * math.pi
        rows = torch.arange(1, h + 1, dtype=torch.float32, device=device)
        cols = torch.arange(1, w + 1, dtype=torch.float32, device=device)
        rows = rows / (rows[-1] + eps) * scale
        cols = cols / (cols[-1] + eps) * scale
        dim_t = torch.arange(self.half, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.half)

        def encode(v: Tensor) -> Tensor:  # (n,) -> (n, half), sin/cos interleaved
            p = v[:, None] / dim_t
            return torch.stack((p[:, 0::2].sin(), p[:, 1::2].cos()), dim=2).flatten(1)

        pe_rows = encode(rows)[:, None, :].expand(h, w, self.half)
        pe_cols = encode(cols)[None, :, :].expand(h, w, self.half)
        return torch.cat((pe_rows, pe_cols), dim=2).permute(2, 0, 1).contiguous()


class _Lateral(nn.Module):
    """A 1 x 1 convolution named ``conv`` (the checkpoint's ``neck.convs.i.conv``)."""

    def __init__(self, channels: int, d_model: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, d_model, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Project every stage to ``d_model`` channels; levels in ``top_down_levels`` add the
    next coarser level, upsampled 2x (nearest). Returns features and position encodings,
    finest first."""

    def __init__(self, channels: list[int], d_model: int = 256,
                 top_down_levels: tuple[int, ...] = (2, 3)):
        super().__init__()
        self.convs = nn.ModuleList(_Lateral(c, d_model) for c in reversed(channels))
        self.top_down_levels = tuple(top_down_levels)
        self.position_encoding = SineEmbedding2d(d_model)

    def forward(self, xs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        n = len(self.convs) - 1
        out: list[Tensor | None] = [None] * len(xs)
        pos: list[Tensor | None] = [None] * len(xs)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                up = F.interpolate(prev.to(torch.float32), scale_factor=2.0, mode="nearest")
                prev = lateral + up
            else:
                prev = lateral
            out[i] = prev
            pos[i] = self.position_encoding(prev).to(prev.dtype)
        return out, pos


class HieraImageEncoder(nn.Module):
    """Trunk and neck (``trunk``, ``neck``), dropping the ``scalp`` coarsest levels.

    Returns
    -------
    features, positions : list of Tensor
        (B, d_model, H_i, W_i), finest first; the last is the image embedding that the mask
        decoder and memory attention use, the others are its high-resolution features.
    """

    def __init__(self, config: HieraConfig, d_model: int = 256, scalp: int = 1):
        super().__init__()
        self.trunk = Hiera(config)
        self.neck = FpnNeck(config.channels, d_model)
        self.scalp = scalp

    def forward(self, image: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        features, positions = self.neck(self.trunk(image))
        if self.scalp:
            features, positions = features[: -self.scalp], positions[: -self.scalp]
        return features, positions
