"""Image encoders: SAM's ViT (windowed + global attention) and the small CNN of the demo model.

``ImageEncoderViT`` has the same state_dict keys and numerics as Meta's
``segment_anything.modeling.ImageEncoderViT``; attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention` with the decomposed
relative-position bias passed as an additive mask, so it also runs under
``torch.autocast`` (bf16 / fp16).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLPBlock, neck

__all__ = [
    "ImageEncoderViT",
    "ImageEncoderCNN",
    "window_partition",
    "window_unpartition",
    "get_rel_pos",
    "rel_pos_attention",
    "unchunked_attention",
]

# Upper bound on the bytes of one attention-bias chunk (B*heads*q*k elements). Global attention
# of ViT at 1024 px has 4096 tokens: the full bias is 12 * 4096**2 elements for ViT-B (403 MB in
# bf16, 805 MB in fp32), so it is built and used in chunks of query rows. Chunks of ~100 MB were
# also measured to be faster than one big bias on CPU (better cache reuse).
MAX_BIAS_BYTES = 1 << 27


# --------------------------------------------------------------------------------------------
# ViT
# --------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B, C_in, H, W) -> (B, H/p, W/p, D)."""

    def __init__(self, *, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def window_partition(x: Tensor, window_size: int) -> tuple[Tensor, tuple[int, int]]:
    """Split tokens into non-overlapping windows, zero-padding the grid if needed.

    Parameters
    ----------
    x : Tensor
        (B, H, W, C) tokens.
    window_size : int
        Window side ``w``.

    Returns
    -------
    windows : Tensor
        (B * nW, w, w, C).
    (Hp, Wp) : tuple of int
        Padded grid size.
    """
    b, h, w, c = x.shape
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nW, w, w, C) -> (B, H, W, C)."""
    hp, wp = pad_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window_size) * (wp // window_size))
    x = windows.view(b, hp // window_size, wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


def get_rel_pos(q_size: int, k_size: int, rel_pos: Tensor) -> Tensor:
    """Relative-position embeddings for every (query, key) pair along one axis.

    Parameters
    ----------
    q_size, k_size : int
        Query and key lengths along the axis.
    rel_pos : Tensor
        (L, C) table; linearly resized when ``L != 2 * max(q_size, k_size) - 1``.

    Returns
    -------
    Tensor
        (q_size, k_size, C).
    """
    max_rel_dist = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != max_rel_dist:
        rel_pos = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1),
            size=max_rel_dist,
            mode="linear",
        )
        rel_pos = rel_pos.reshape(-1, max_rel_dist).permute(1, 0)
    index = _relative_index(q_size, k_size, rel_pos.device)
    return rel_pos.index_select(0, index).view(q_size, k_size, -1)


_INDEX_CACHE: dict[tuple[int, int, torch.device], Tensor] = {}


def _relative_index(q_size: int, k_size: int, device: torch.device) -> Tensor:
    """Flattened (q_size * k_size,) int64 index into the rel-pos table (cached)."""
    key = (q_size, k_size, device)
    index = _INDEX_CACHE.get(key)
    if index is None:
        # a normal tensor even when first made under inference_mode: the cached index is
        # reused by training, where autograd refuses inference tensors
        with torch.inference_mode(False):
            q_coords = torch.arange(q_size, device=device)[:, None] * max(k_size / q_size, 1.0)
            k_coords = torch.arange(k_size, device=device)[None, :] * max(q_size / k_size, 1.0)
            relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
            index = relative.long().reshape(-1)
        if device.type != "meta":
            _INDEX_CACHE[key] = index
    return index


# On CPU, PyTorch's fused attention kernel gains nothing from bf16 (measured on Zen4: the same
# time as fp32), while bf16 GEMMs are ~4x faster than fp32 ones. For long sequences in bf16/fp16
# on CPU we therefore compute attention as two batched GEMMs over query chunks small enough to
# mostly in cache: for ViT-B global attention 1.6x less CPU time than the fused kernel on one
# thread, ~1.2x on two threads of a busy 2-core machine (fewer, larger chunks synchronise less;
# 64 MB chunks are the compromise). Set to False to use scaled_dot_product_attention everywhere.
CPU_GEMM_ATTENTION = True
_GEMM_MIN_TOKENS = 1024  # shorter sequences (windows) stay on scaled_dot_product_attention
_GEMM_CHUNK_BYTES = 1 << 26


def rel_pos_attention(
    q: Tensor, k: Tensor, v: Tensor, rel_h: Tensor, rel_w: Tensor, *, chunked: bool = True
) -> Tensor:
    """Softmax attention with a decomposed relative-position bias.

    ``softmax(q k^T / sqrt(hd) + rel_h[..., ky] + rel_w[..., kx]) v`` without materialising
    the full (N, N) bias: it is built in chunks of query rows of at most
    :data:`MAX_BIAS_BYTES` (read at each call).

    Parameters
    ----------
    q, k, v : Tensor
        (B, heads, N, hd) with N = H * W tokens in row-major (y, x) order.
    rel_h : Tensor
        (B * heads, H, W, H): bias of query (y, x) for key row ky.
    rel_w : Tensor
        (B * heads, H, W, W): bias of query (y, x) for key column kx.
    chunked : bool
        False: the whole bias in one chunk, with no chunk-size arithmetic on the shapes
        (the export-safe path, see :func:`unchunked_attention`).

    Returns
    -------
    Tensor
        (B, heads, N, hd).
    """
    b, nh, n, hd = q.shape
    _, h, w, _ = rel_h.shape
    gemm = (
        chunked
        and CPU_GEMM_ATTENTION
        and q.device.type == "cpu"
        and q.dtype in (torch.bfloat16, torch.float16)
        and n >= _GEMM_MIN_TOKENS
        and not (torch.is_grad_enabled() and q.requires_grad)
    )
    rows = h
    if chunked:
        per_row = b * nh * w * n * q.element_size()
        n_chunks = -(-h * per_row // (_GEMM_CHUNK_BYTES if gemm else MAX_BIAS_BYTES))
        rows = -(-h // max(1, n_chunks))  # equal chunks of query rows
    # one contiguous buffer for the (B*heads, rows*W, H*W) bias, reused by every chunk;
    # torch.add(out=) keeps it row-major (a plain broadcast add may pick another layout)
    autograd = torch.is_grad_enabled() and (rel_h.requires_grad or rel_w.requires_grad
                                             or q.requires_grad)
    buf = None if autograd else torch.empty(b * nh * rows * w * n, dtype=q.dtype, device=q.device)
    if gemm:
        qs = (q * hd**-0.5).reshape(b * nh, n, hd)
        kt = k.reshape(b * nh, n, hd).transpose(1, 2)
        vs = v.reshape(b * nh, n, hd)
        out = torch.empty_like(qs)
    outs = []
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        m = (y1 - y0) * w
        if autograd:  # out= is not differentiable: a fresh tensor per chunk when training
            bias = rel_h[:, y0:y1, :, :, None] + rel_w[:, y0:y1, :, None, :]
        else:
            bias = buf[: b * nh * m * n].view(b * nh, y1 - y0, w, h, w)
            torch.add(rel_h[:, y0:y1, :, :, None], rel_w[:, y0:y1, :, None, :], out=bias)
        if gemm:
            logits = bias.view(b * nh, m, n).baddbmm_(qs[:, y0 * w : y1 * w], kt)
            torch.bmm(torch.softmax(logits, dim=-1), vs, out=out[:, y0 * w : y1 * w])
        else:
            outs.append(
                F.scaled_dot_product_attention(
                    q[:, :, y0 * w : y1 * w], k, v, attn_mask=bias.reshape(b, nh, m, n)
                )
            )
    if gemm:
        return out.view(b, nh, n, hd)
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


class Attention(nn.Module):
    """Multi-head self-attention with decomposed relative-position bias (MViTv2 / ViTDet).

    Keys: ``qkv``, ``proj``, ``rel_pos_h`` (2H-1, head_dim), ``rel_pos_w`` (2W-1, head_dim).
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        use_rel_pos: bool = True,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        #: build the relative-position bias in chunks of query rows (False while exporting:
        #: see :func:`unchunked_attention`)
        self.chunked = True
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, H, W, D) -> (B, H, W, D)."""
        b, h, w, d = x.shape
        n = h * w
        nh = self.num_heads
        # (3, B, heads, N, hd)
        qkv = self.qkv(x).reshape(b, n, 3, nh, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            hd = q.shape[-1]
            rh = get_rel_pos(h, h, self.rel_pos_h).to(q.dtype)  # (H, H, hd)
            rw = get_rel_pos(w, w, self.rel_pos_w).to(q.dtype)  # (W, W, hd)
            r_q = q.reshape(b * nh, h, w, hd)
            # rel_h[b, y, x, ky] = q[b, y, x] . Rh[y, ky]; rel_w[b, y, x, kx] = q . Rw[x, kx]
            rel_h = torch.einsum("byxc,ykc->byxk", r_q, rh).to(q.dtype)
            rel_w = torch.einsum("byxc,xkc->byxk", r_q, rw).to(q.dtype)
            out = rel_pos_attention(q, k, v, rel_h, rel_w, chunked=self.chunked)
        out = out.transpose(1, 2).reshape(b, h, w, d)
        return self.proj(out)


@contextlib.contextmanager
def unchunked_attention(module: nn.Module) -> Iterator[None]:
    """Every ViT :class:`Attention` inside ``module`` computes its bias in one chunk while
    the context is open (their previous setting is restored after).

    For tracing the encoder into ONNX: :func:`rel_pos_attention` computes the sizes of its
    query-row chunks from the traced shapes with ``-(-a // b)``; ONNX integer division
    truncates where Python floors, so a chunked graph gets wrong slice sizes. One chunk has
    no such arithmetic (and onnxruntime plans the memory itself).
    """
    layers = [m for m in module.modules() if isinstance(m, Attention)]
    before = [m.chunked for m in layers]
    for m in layers:
        m.chunked = False
    try:
        yield
    finally:
        for m, chunked in zip(layers, before):
            m.chunked = chunked


class Block(nn.Module):
    """Pre-norm transformer block; windowed attention when ``window_size > 0`` else global."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 0,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim=dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))
        self.window_size = window_size

    def forward(self, x: Tensor) -> Tensor:
        """x (B, H, W, D) -> (B, H, W, D)."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(x), self.window_size, pad_hw, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """SAM's ViT image encoder.

    Parameters
    ----------
    img_size : int
        Input side S (must be divisible by ``patch_size``).
    patch_size : int
        Patch side p; the embedding is (B, out_chans, S/p, S/p).
    in_chans, embed_dim, depth, num_heads, mlp_ratio, out_chans, qkv_bias
        Usual ViT hyperparameters.
    use_abs_pos, use_rel_pos : bool
        Absolute position embedding ``pos_embed`` (1, S/p, S/p, D) and decomposed relative
        position bias in every block.
    window_size : int
        Window side of windowed-attention blocks (0: all global).
    global_attn_indexes : sequence of int
        Blocks that attend globally.

    Forward: (B, in_chans, S, S) normalised pixels -> (B, out_chans, S/p, S/p).
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        self.img_size = img_size
        self.patch_size = patch_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )
        self.neck = neck(embed_dim, out_chans)

    @property
    def embedding_size(self) -> int:
        """Side E of the output embedding."""
        return self.img_size // self.patch_size

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 3, S, S) -> (B, out_chans, S/p, S/p)."""
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


# --------------------------------------------------------------------------------------------
# CNN (demo model)
# --------------------------------------------------------------------------------------------

_GN_GROUPS = 8  # fixed so the architecture is fully described by state_dict shapes


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(_GN_GROUPS, c), c)


class ConvNormAct(nn.Sequential):
    """Conv -> GroupNorm -> GELU; keys ``0`` (conv), ``1`` (norm)."""

    def __init__(self, c_in: int, c_out: int, *, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            _norm(c_out),
            nn.GELU(),
        )


class ResBlock(nn.Module):
    """Basic residual block: x + GN(conv(GELU(GN(conv(x))))) followed by GELU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.norm1 = _norm(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.norm2 = _norm(c)
        nn.init.zeros_(self.norm2.weight)  # start as identity: trains quickly from scratch

    def forward(self, x: Tensor) -> Tensor:
        y = F.gelu(self.norm1(self.conv1(x)))
        return F.gelu(x + self.norm2(self.conv2(y)))


class ImageEncoderCNN(nn.Module):
    """Small residual CNN + FPN encoder of the bundled demo model.

    Four stages at strides 4, 8, 16, 32 (``widths``, ``depths`` residual blocks each); the
    stride-16 and stride-32 features are projected to ``fpn_dim``, upsampled and added to the
    stride-8 features, refined by a 3x3 conv, and a SAM-like neck (1x1 conv, LayerNorm2d,
    3x3 conv, LayerNorm2d) maps them to ``out_chans``. The receptive field of the stride-32
    path covers the whole 256 px input.

    Every hyperparameter except ``img_size`` is visible in the state_dict shapes; ``img_size``
    is stored in the persistent buffer ``input_size`` so a bare state_dict still describes
    the model completely.

    Forward: (B, 3, S, S) -> (B, out_chans, S/8, S/8).
    """

    stride = 8

    def __init__(
        self,
        *,
        img_size: int = 256,
        in_chans: int = 3,
        widths: Sequence[int] = (32, 64, 128, 192),
        depths: Sequence[int] = (1, 2, 2, 2),
        fpn_dim: int = 128,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError("widths and depths need 4 entries (strides 4, 8, 16, 32)")
        if img_size % 32:
            raise ValueError(f"img_size {img_size} must be divisible by 32")
        self.img_size = img_size
        self.register_buffer("input_size", torch.tensor([img_size], dtype=torch.int64))
        self.stem = nn.Sequential(
            ConvNormAct(in_chans, widths[0] // 2, stride=2),
            ConvNormAct(widths[0] // 2, widths[0], stride=2),
        )
        stages = []
        c_prev = widths[0]
        for i, (c, d) in enumerate(zip(widths, depths)):
            layers: list[nn.Module] = [] if i == 0 else [ConvNormAct(c_prev, c, stride=2)]
            layers += [ResBlock(c) for _ in range(d)]
            stages.append(nn.Sequential(*layers))
            c_prev = c
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_dim, 1) for c in widths[1:])
        self.fuse = ConvNormAct(fpn_dim, fpn_dim)
        self.neck = neck(fpn_dim, out_chans)

    @property
    def embedding_size(self) -> int:
        """Side E of the output embedding."""
        return self.img_size // self.stride

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401
        key = prefix + "input_size"
        if key in state_dict and int(state_dict[key].reshape(-1)[0]) != self.img_size:
            raise ValueError(
                f"checkpoint CNN encoder has img_size {int(state_dict[key].reshape(-1)[0])}, "
                f"model has {self.img_size}"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 3, S, S) -> (B, out_chans, S/8, S/8)."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        top = self.lateral[2](feats[3])
        mid = self.lateral[1](feats[2]) + F.interpolate(top, scale_factor=2.0, mode="nearest")
        y = self.lateral[0](feats[1]) + F.interpolate(mid, scale_factor=2.0, mode="nearest")
        return self.neck(self.fuse(y))
