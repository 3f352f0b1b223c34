"""TinyViT image encoder of MobileSAM (``vit_t``), with MobileSAM's state_dict keys.

The network is the one of ``mobile_sam.modeling.TinyViT`` as built by MobileSAM's
``build_sam_vit_t`` (TinyViT-5M adapted to SAM): a convolutional stem (stride 4), one stage of
MobileNet-style inverted residual blocks, three stages of windowed-attention transformer
blocks, patch-merging convolutions between stages (strides 2, 2 and 1, so the tokens end at
stride 16) and SAM's neck to 256 channels. A checkpoint written by MobileSAM or micro-sam
(``mobile_sam.pt``, micro-sam's ``vit_t*.pt``) loads into it unchanged, including the unused
ImageNet classifier (``norm_head``, ``head``) that those files carry.

Written for speed on CPUs: activations stay channels-last throughout (the tokens of the
transformer stages are the memory of a channels-last feature map, so no copies go between
attention and the depthwise convolutions), the batch norms are folded into their
convolutions in eval mode, and attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention` with the learned bias table as an
additive mask, so it also runs under ``torch.autocast`` (bf16 / fp16).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import neck

__all__ = [
    "ConvBN",
    "ImageEncoderTinyViT",
    "MERGE_STRIDES",
    "TinyViTAttention",
    "TinyViTBlock",
    "attention_bias_index",
    "tiny_vit_hyperparameters",
]

#: Rows of the 256 x 256 (at 1024 px input) feature map that an MBConv block processes at a
#: time in inference: its 4x wider hidden activations (64 rows: 8.6 MB in bf16) then stay in
#: the CPU's cache between the expansion, the depthwise convolution and the projection
#: (0: whole maps, no strips). Measured on a Zen 4 with 32 MB L3, one thread, bf16: 16 rows
#: 153 ms for stage 0, 64 rows 125-140 ms, whole maps 183-208 ms.
MBCONV_STRIP_ROWS = 64


def no_autograd(x: Tensor) -> bool:
    """True when nothing records ``x`` for a backward pass, so it may be changed in place."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def gelu_(x: Tensor) -> Tensor:
    """Exact (erf) GELU, in place when autograd does not need ``x``; returns the result."""
    if no_autograd(x):
        return torch.ops.aten.gelu_(x)
    return F.gelu(x)


def add_(x: Tensor, y: Tensor) -> Tensor:
    """``x + y``, written into ``x`` (a fresh intermediate) when autograd does not need it."""
    if no_autograd(x) and no_autograd(y) and x.dtype == torch.promote_types(x.dtype, y.dtype):
        return x.add_(y)
    return x + y


class GELU(nn.GELU):
    """:class:`torch.nn.GELU` (exact), computed in place when autograd does not need its input."""

    def forward(self, x: Tensor) -> Tensor:
        return gelu_(x)


#: Strides of the patch merges after stages 0, 1 and 2: the last merge keeps the resolution
#: (MobileSAM's TinyViT for SAM), so the 4-stage encoder ends at stride 4 * 2 * 2 * 1 = 16.
MERGE_STRIDES = (2, 2, 1)


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d (keys ``c``, ``bn``; TinyViT's ``Conv2d_BN``).

    In eval mode the batch norm is folded into the convolution's weights and bias on each
    call (a few small tensors), which saves a pass over the activations.

    Parameters
    ----------
    c_in, c_out : int
        Channels.
    kernel_size, stride, padding, groups : int
        Of the convolution.

    Forward: (B, c_in, H, W) -> (B, c_out, H', W'), in the memory format of the input.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.add_module(
            "c", nn.Conv2d(c_in, c_out, kernel_size, stride, padding, groups=groups, bias=False)
        )
        self.add_module("bn", nn.BatchNorm2d(c_out))

    def folded(self) -> tuple[Tensor, Tensor]:
        """Weight (c_out, c_in / groups, k, k) and bias (c_out,) of the conv with the BN folded in."""
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = self.c.weight * scale[:, None, None, None]
        return weight, bn.bias - bn.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self.bn(self.c(x))
        weight, bias = self.folded()
        c = self.c
        return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)


class PatchEmbed(nn.Module):
    """Stem: two 3x3 stride-2 ConvBNs with a GELU between: (B, 3, S, S) -> (B, D, S/4, S/4)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, 2, 1),
            GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU.

    (B, C, H, W) -> (B, C, H, W); keys ``conv1``, ``conv2``, ``conv3``.
    """

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W), in row strips when nothing needs gradients."""
        rows = MBCONV_STRIP_ROWS
        if self.training or not no_autograd(x) or rows <= 0 or x.shape[2] <= rows:
            return self.rows(x, 0, x.shape[2])
        out = None
        for y0 in range(0, x.shape[2], rows):
            y1 = min(x.shape[2], y0 + rows)
            strip = self.rows(x, y0, y1)
            if out is None:
                out = torch.empty_like(x, dtype=strip.dtype)
            out[:, :, y0:y1] = strip
        return out

    def rows(self, x: Tensor, y0: int, y1: int) -> Tensor:
        """The block's output rows ``y0:y1``, from input rows ``y0 - 1 : y1 + 1``.

        The depthwise convolution pads every strip by one zero row: at the map's top and
        bottom that is the convolution's own padding; inside, it only touches the halo rows,
        which are dropped.
        """
        h = x.shape[2]
        a0, a1 = max(0, y0 - 1), min(h, y1 + 1)
        t = gelu_(self.conv2(gelu_(self.conv1(x[:, :, a0:a1]))))
        t = self.conv3(t[:, :, y0 - a0 : y1 - a0])
        return gelu_(add_(t, x[:, :, y0:y1]))


class PatchMerging(nn.Module):
    """1x1 ConvBN, GELU, 3x3 depthwise ConvBN (stride 1 or 2), GELU, 1x1 ConvBN.

    (B, dim, H, W) -> (B, out_dim, H / stride, W / stride) (ceil); keys ``conv1..conv3``.
    """

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(gelu_(self.conv2(gelu_(self.conv1(x)))))


def attention_bias_index(window_size: int) -> Tensor:
    """Index of each (query, key) pair of a window into TinyViT's bias table.

    The table of a w x w window holds one bias per offset (|dy|, |dx|), numbered in the
    order MobileSAM enumerates them, which is ``|dy| * w + |dx|``.

    Returns
    -------
    Tensor
        (w*w, w*w) int64; tokens in row-major (y, x) order.
    """
    yy, xx = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    y, x = yy.reshape(-1), xx.reshape(-1)
    return (y[:, None] - y[None, :]).abs() * window_size + (x[:, None] - x[None, :]).abs()


class TinyViTAttention(nn.Module):
    """Multi-head self-attention inside one window, with a learned per-offset bias.

    Keys: ``norm`` (LayerNorm, applied first), ``qkv`` (per head: q, k, v of ``head_dim``
    each), ``proj``, ``attention_biases`` (heads, w*w).

    Parameters
    ----------
    dim : int
        Token width D.
    num_heads : int
        Heads; ``head_dim = dim // num_heads``.
    window_size : int
        Window side w.

    Forward: (B', w*w, D) windows -> (B', w*w, D).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.register_buffer(
            "attention_bias_idxs", attention_bias_index(window_size), persistent=False
        )

    def bias(self) -> Tensor:
        """(heads, w*w, w*w) additive attention bias."""
        return self.attention_biases[:, self.attention_bias_idxs]

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # (B', heads, N, hd) each
        # a 4-D mask: a 3-D one sends PyTorch's CPU attention to its slow reference path
        mask = self.bias().to(q.dtype)[None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


def window_attention(x: Tensor, attn: TinyViTAttention, window_size: int) -> Tensor:
    """Apply ``attn`` in non-overlapping windows, zero-padding the grid bottom/right.

    Parameters
    ----------
    x : Tensor
        (B, H, W, D) tokens (not normalised: the attention normalises, padding included,
        exactly like MobileSAM).
    attn : TinyViTAttention
    window_size : int

    Returns
    -------
    Tensor
        (B, H, W, D).
    """
    b, h, w, d = x.shape
    ws = window_size
    pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    nh, nw = (h + pad_b) // ws, (w + pad_r) // ws
    windows = x.view(b, nh, ws, nw, ws, d).transpose(2, 3).reshape(b * nh * nw, ws * ws, d)
    out = attn(windows).view(b, nh, nw, ws, ws, d).transpose(2, 3).reshape(b, nh * ws, nw * ws, d)
    if pad_b or pad_r:
        out = out[:, :h, :w]
    return out


class TinyViTBlock(nn.Module):
    """Windowed attention, depthwise 3x3 ConvBN, MLP: (B, H, W, D) -> (B, H, W, D).

    ``x + attn(x)``, then ``local_conv`` (no residual), then ``x + mlp(x)``; the MLP
    normalises first (keys ``mlp.norm``, ``mlp.fc1``, ``mlp.fc2``).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = TinyViTAttention(dim, num_heads, window_size)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("norm", nn.LayerNorm(dim))
        self.mlp.add_module("fc1", nn.Linear(dim, hidden))
        self.mlp.add_module("act", GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, dim))
        self.local_conv = ConvBN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        x = add_(window_attention(x, self.attn, self.window_size), x)
        # (B, H, W, D) is the memory of a channels-last (B, D, H, W) map: no copy either way
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return add_(self.mlp(x), x)


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks, then a patch merge; keys ``blocks``, ``downsample``."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int, stride: int):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) channels-last -> (B, H', W', out_dim) tokens."""
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x).permute(0, 2, 3, 1)


class AttentionStage(nn.Module):
    """Stages 1..3: TinyViT blocks, then a patch merge except after the last stage."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        out_dim: int | None,
        stride: int = 2,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio) for _ in range(depth)
        )
        self.downsample = None if out_dim is None else PatchMerging(dim, out_dim, stride)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, H, W, dim) -> (B, H', W', out_dim or dim)."""
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is None:
            return x
        return self.downsample(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ImageEncoderTinyViT(nn.Module):
    """MobileSAM's TinyViT image encoder.

    Parameters
    ----------
    img_size : int
        Input side S (a multiple of 16); the embedding is (B, out_chans, S/16, S/16).
    in_chans : int
        Input channels.
    embed_dims, depths, num_heads, window_sizes : sequence of 4 int
        Per stage: width, blocks, attention heads and window side (the heads and window of
        stage 0, the convolutional one, are unused). MobileSAM: (64, 128, 160, 320),
        (2, 2, 6, 2), (2, 4, 5, 10), (7, 7, 14, 7).
    mlp_ratio : float
        MLP width of the attention blocks over their token width.
    mbconv_expand_ratio : float
        Hidden width of the MBConv blocks over their width.
    num_classes : int
        Outputs of the unused ImageNet classifier ``head`` kept so that MobileSAM's
        checkpoints load and save unchanged (1000 in MobileSAM; 0: no ``norm_head``/``head``).
    out_chans : int
        Embedding channels.

    Forward: (B, in_chans, S, S) normalised pixels -> (B, out_chans, S/16, S/16), contiguous.
    """

    stride = 16

    def __init__(
        self,
        *,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        num_classes: int = 1000,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        if not len(embed_dims) == len(depths) == len(num_heads) == len(window_sizes) == 4:
            raise ValueError("TinyViT needs 4 stages of embed_dims, depths, heads, windows")
        if img_size % self.stride:
            raise ValueError(f"img_size {img_size} is not a multiple of {self.stride}")
        self.img_size = img_size
        dims = [int(d) for d in embed_dims]
        self.patch_embed = PatchEmbed(in_chans, dims[0])
        layers: list[nn.Module] = [
            ConvStage(dims[0], depths[0], mbconv_expand_ratio, dims[1], MERGE_STRIDES[0])
        ]
        for i in range(1, 4):
            layers.append(AttentionStage(
                dims[i], depths[i], num_heads[i], window_sizes[i], mlp_ratio,
                out_dim=dims[i + 1] if i < 3 else None,
                stride=MERGE_STRIDES[i] if i < 3 else 1,
            ))  # fmt: skip
        self.layers = nn.ModuleList(layers)
        if num_classes > 0:
            self.norm_head = nn.LayerNorm(dims[-1])
            self.head = nn.Linear(dims[-1], num_classes)
        self.neck = neck(dims[-1], out_chans)

    @property
    def embedding_size(self) -> int:
        """Side E of the output embedding."""
        return self.img_size // self.stride

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 3, S, S) -> (B, out_chans, S/16, S/16)."""
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        for layer in self.layers:
            x = layer(x)
        return self.neck(x.permute(0, 3, 1, 2)).contiguous()


def _blocks(sd: Mapping[str, Tensor], prefix: str, stage: int) -> int:
    rx = re.compile(re.escape(f"{prefix}layers.{stage}.blocks.") + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def tiny_vit_hyperparameters(sd: Mapping[str, Tensor], prefix: str = "") -> dict[str, Any]:
    """A TinyViT encoder's hyperparameters read from its state_dict's shapes.

    Works on meta tensors too. The input size is not in the weights (the encoder has no
    position embedding); MobileSAM's is 1024.

    Parameters
    ----------
    sd : mapping of str to Tensor
        The encoder's keys, each behind ``prefix`` (e.g. ``"image_encoder."``).
    prefix : str

    Returns
    -------
    dict
        ``tiny_embed_dims``, ``tiny_depths``, ``tiny_num_heads``, ``tiny_window_sizes`` (tuples
        of 4 int; stage 0 has no heads or window and gets MobileSAM's 2 and 7),
        ``encoder_mlp_ratio`` and ``tiny_mbconv_ratio`` (float), ``tiny_num_classes`` (int).

    Raises
    ------
    KeyError
        A key of a 4-stage TinyViT is missing.
    """
    p = prefix
    expand = sd[f"{p}layers.0.blocks.0.conv1.c.weight"].shape  # (hidden, dim, 1, 1)
    dims, heads, windows = [int(expand[1])], [2], [7]
    for i in range(1, 4):
        dims.append(int(sd[f"{p}layers.{i}.blocks.0.attn.proj.weight"].shape[0]))
        biases = sd[f"{p}layers.{i}.blocks.0.attn.attention_biases"].shape  # (heads, w*w)
        heads.append(int(biases[0]))
        windows.append(math.isqrt(int(biases[1])))
    hidden = int(sd[f"{p}layers.1.blocks.0.mlp.fc1.weight"].shape[0])
    head = sd.get(f"{p}head.weight")
    return {
        "tiny_embed_dims": tuple(dims),
        "tiny_depths": tuple(_blocks(sd, p, i) for i in range(4)),
        "tiny_num_heads": tuple(heads),
        "tiny_window_sizes": tuple(windows),
        "encoder_mlp_ratio": hidden / dims[1],
        "tiny_mbconv_ratio": int(expand[0]) / dims[0],
        "tiny_num_classes": 0 if head is None else int(head.shape[0]),
    }
