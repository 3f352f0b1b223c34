"""The click decoder: SAM's mask decoder for one prompt on one image, with the
prompt-independent image-side work cached per image (:class:`CachedDecoder`); exact up to
float rounding. Also the direct bilinear upsampling of a click's masks
(:func:`upsample_click_logits`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_sam.models.decoder_terms import image_terms, positional_parts

__all__ = ["CachedDecoder", "ClickCache", "bilinear_2x", "click_precision",
           "upsample_click_logits"]


@dataclass
class ClickCache:
    """The prompt-independent tensors of one image embedding (see :meth:`CachedDecoder.prepare`).

    Attributes
    ----------
    features : Tensor (D, E, E)
        The embedding they were computed from (identity-checked by the predictor).
    layers : list of dict
        Per transformer layer: token->image keys / values and image->token queries of the
        shared image tokens (the first layer: only their sums with the positional parts), and
        the parts of ``norm4`` that do not depend on the prompt.
    final : dict
        Keys and values of the final token->image attention.
    head : dict
        The two transposed convolutions of the output upscaling, each split by the output
        row of its taps (lists of two): ``shw`` the first applied to the shared part,
        ``w1`` and ``cw`` its weights and constant part, ``w2`` and ``b2`` the second.
    side, hw : int
        E and E * E.
    """

    features: Tensor
    layers: list
    final: dict
    head: dict
    side: int
    hw: int


class CachedDecoder:
    """SAM's mask decoder for one prompt (points, a box or both) on an image seen before.

    Mathematically identical to ``model.mask_decoder`` for prompts without a mask input; only
    floating-point rounding differs. The same idea as
    :class:`napari_sam.automatic.grid_decoder.GridDecoder` (which batches many single-point
    prompts), for any sparse prompt and both multimask modes.

    How. Before the first image->token attention the image tokens do not depend on the
    prompt, so their projections are computed once per image (:meth:`prepare`). Each
    image->token attention adds a per-pixel mix of ``H * T`` token vectors (a low-rank
    term) and each layer norm rescales every pixel, so the image tokens stay
    ``alpha * (Sh + Lt.T @ R) + c`` with ``Sh``, ``c`` per image and ``alpha`` (HW,),
    ``Lt`` (r, HW), ``R`` (r, D) per click. Attention of the few prompt tokens to the image
    uses the cached projections plus rank-r corrections; layer norms are computed in closed
    form; the first transposed convolution of the upscaling head is applied to ``Sh`` once
    per image. Per click, ViT-B: about 0.4 G multiply-adds instead of 1.7 G.

    Parameters
    ----------
    model : Sam
        A model with Meta's decoder structure (:meth:`supports`).
    pixel_tile : int
        Embedding pixels per step of the upscaling head, rounded down to whole embedding
        rows (keeps its intermediates in the CPU's cache).
    precision : {"fp32", "bf16"}
        ``"fp32"``: float32 throughout (equal to the plain decoder up to float rounding).
        ``"bf16"``: the upscaling head's matrix products (per click about 0.25 G of the 0.4 G
        multiply-adds) in bfloat16 with float32 accumulation; its layer norm and everything
        before it stay float32. What ``precision="auto"`` gives on CPUs with native bfloat16
        (:func:`click_precision`): the head takes about half the time there, and masks stay
        closer to float32 than the plain decoder's bfloat16 autocast (docs/benchmarks.md,
        "Click to mask"). The transformer is not run in bfloat16: on the demo model that
        moved 11 % of nucleus masks below IoU 0.98 with float32 (autocast: 4 %).

    >>> dec = CachedDecoder(model)
    >>> cache = dec.prepare(embedding.features)           # once per image
    >>> logits, iou = dec.decode(cache, sparse, multimask=True)   # per click
    """

    PRECISIONS = ("fp32", "bf16")

    @staticmethod
    def supports(model) -> bool:
        """Whether ``model`` has the module structure this decoder relies on."""
        try:
            dec = model.mask_decoder
            tf = dec.transformer
            if len(tf.layers) == 0:
                return False
            for layer in tf.layers:
                for name in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
                    a = getattr(layer, name)
                    a.q_proj, a.k_proj, a.v_proj, a.out_proj, a.num_heads  # noqa: B018
                layer.norm1, layer.norm2, layer.norm3, layer.mlp  # noqa: B018
                layer.token_self_attention  # noqa: B018
                if not isinstance(layer.norm4, torch.nn.LayerNorm):
                    return False
            tf.final_attn_token_to_image.q_proj, tf.norm_final_attn  # noqa: B018
            up = dec.output_upscaling
            model.prompt_encoder.no_mask_embed  # noqa: B018
            if any(p.dtype != torch.float32 for p in dec.parameters()):
                return False
            return bool(
                len(up) == 5
                and all(isinstance(up[i], torch.nn.ConvTranspose2d) for i in (0, 3))
                and all(tuple(up[i].kernel_size) == (2, 2) for i in (0, 3))
                and all(tuple(up[i].stride) == (2, 2) for i in (0, 3))
                and all(tuple(up[i].padding) == (0, 0) for i in (0, 3))
                and hasattr(up[1], "eps")
                and dec.num_mask_tokens > 1
            )
        except (AttributeError, TypeError, IndexError):
            return False

    def __init__(self, model, pixel_tile: int = 1024, precision: str = "fp32"):
        if precision not in self.PRECISIONS:
            raise ValueError(f"precision must be one of {self.PRECISIONS}, not {precision!r}")
        self.model = model
        self.pe = model.prompt_encoder
        self.dec = model.mask_decoder
        self.tf = self.dec.transformer
        self.num_mask_tokens = int(self.dec.num_mask_tokens)
        #: embedding pixels per step of the upscaling head (keeps intermediates in cache)
        self.pixel_tile = int(pixel_tile)
        #: "fp32" or "bf16" (see the class docstring)
        self.precision = precision
        #: storage and matrix-product dtype of the per-pixel tensors
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self._positional = None  # the model's positional parts, made once (positional_parts)

    def positional_parts(self) -> list[Tensor]:
        """:func:`napari_sam.models.decoder_terms.positional_parts` of the model, made once."""
        if self._positional is None:
            self._positional = positional_parts(self.dec, self.pe)
        return self._positional

    # ------------------------------------------------------------------ per image
    def prepare(self, features: Tensor) -> ClickCache:
        """Prompt-independent tensors of one image embedding (D, E, E) float, float32 math
        (:func:`napari_sam.models.decoder_terms.image_terms`), stored in :attr:`dtype`
        where they are per pixel.

        About 2 G multiply-adds for ViT-B (a little more than one plain decoder call).
        """
        t = image_terms(self.dec, self.pe, features, self.positional_parts())
        cd = self.dtype
        layers = []
        for i, st in enumerate(t.layers):
            if i == 0:  # the first layer reads only the sums k1 + k2 and q1 + q2
                st = {k: v for k, v in st.items() if k not in ("q1", "q2")}
                st["t2i"] = {k: v for k, v in st["t2i"].items() if k not in ("k1", "k2")}
            layers.append(st)
        # the two transposed convolutions split by the output row of their taps, a and a2
        # (columns (a, b, o) -> two blocks (b, o); see masks)
        hd = t.head

        def halves(x: Tensor, dtype: torch.dtype) -> list[Tensor]:
            k = x.shape[-1] // 2
            return [x[..., i * k : (i + 1) * k].contiguous().to(dtype) for i in (0, 1)]

        head = {"shw": halves(hd["shw"], cd), "w1": halves(hd["wf"], torch.float32),
                "cw": halves(hd["cw"], torch.float32), "w2": halves(hd["w2f"], cd),
                "b2": halves(hd["b2"], cd)}  # fmt: skip
        return ClickCache(features, layers, t.final, head, t.side, t.hw)

    # ------------------------------------------------------------------ per click
    @torch.inference_mode()
    def decode(self, cache: ClickCache, sparse: Tensor, multimask: bool = True):
        """Mask logits and predicted IoU of one prompt.

        Parameters
        ----------
        cache : ClickCache
            From :meth:`prepare` for the image.
        sparse : Tensor (1, T, D)
            Sparse prompt embeddings from the model's prompt encoder (no mask prompt).
        multimask : bool
            Masks 1..3 of the decoder instead of mask 0.

        Returns
        -------
        logits : Tensor (1, C, 4E, 4E) float32
        iou : Tensor (1, C) float32
            C = 3 (``multimask``) or 1.
        """
        hyper, iou, state = self.tokens(cache, sparse.float(), multimask)
        return self.masks(cache, state, hyper), iou

    def tokens(self, cache: ClickCache, sparse: Tensor, multimask: bool):
        """Two-way transformer and heads: -> hyper (1, C, D8), iou (1, C), low-rank state."""
        out_tok = torch.cat([self.dec.iou_token.weight, self.dec.mask_tokens.weight], 0)
        tokens = torch.cat([out_tok[None].float(), sparse], 1)  # (1, T, D)
        t, dm = tokens.shape[1], tokens.shape[2]
        r_max = sum(ly.cross_attn_image_to_token.num_heads * t + 1 for ly in self.tf.layers)
        state = {
            "alpha": None, "r": 0, "vt": [], "hw": cache.hw,
            "lt": tokens.new_empty(r_max, cache.hw), "rm": tokens.new_empty(r_max, dm),
        }  # fmt: skip
        queries = tokens
        for layer, st in zip(self.tf.layers, cache.layers):
            queries = layer.token_self_attention(queries, tokens)
            att = self.token_to_image(st["t2i"], queries + tokens, state)
            queries = layer.norm2(queries + att)
            queries = layer.norm3(queries + layer.mlp(queries))
            self.image_to_token(layer.cross_attn_image_to_token, st, queries, tokens, state)
        # the final attention only for the tokens read after it (each query attends alone)
        masks = list(range(2, 1 + self.num_mask_tokens)) if multimask else [1]
        used = [0, *masks]
        queries = queries[:, used]
        att = self.token_to_image(cache.final, queries + tokens[:, used], state)
        queries = self.tf.norm_final_attn(queries + att)
        iou = self.dec.iou_prediction_head(queries[:, 0])[:, [m - 1 for m in masks]]
        mlps = self.dec.output_hypernetworks_mlps
        hyper = torch.stack([mlps[m - 1](queries[:, j + 1]) for j, m in enumerate(masks)], 1)
        return hyper, iou.float(), state

    @staticmethod
    def token_to_image(st: dict, q_in: Tensor, state: dict) -> Tensor:
        """Cross-attention of the prompt tokens (1, T, D) to the image tokens of the click."""
        attn = st["attn"]
        t = q_in.shape[1]
        h = attn.num_heads
        hw = state["hw"]
        q = F.linear(q_in[0], attn.q_proj.weight, attn.q_proj.bias)  # (T, Di)
        di = q.shape[-1]
        d = di // h
        qs = (q * (1.0 / math.sqrt(d))).view(t, h, d).transpose(0, 1)  # (h, T, d)
        alpha, r = state["alpha"], state["r"]
        lt, rm = state["lt"][:r], state["rm"][:r]
        if alpha is None:  # the image tokens of the first layer: one product
            s = torch.bmm(qs, st["k12"])  # (h, T, HW)
        else:
            s = torch.bmm(qs, st["k1"])
            if r:
                qk = (rm @ attn.k_proj.weight.T).view(r, h, d)
                g = torch.einsum("htd,rhd->htr", qs, qk).reshape(h * t, r)
                s.view(h * t, hw).addmm_(g, lt)
            s.mul_(alpha)
            s.baddbmm_(qs, st["k2"])
        p = torch.softmax(s, dim=-1)
        if alpha is not None:
            p.mul_(alpha)
        o = torch.bmm(p, st["v1"])  # (h, T, d)
        if r:
            pl = (p.view(h * t, hw) @ lt.T).view(h, t, r)
            qv = (rm @ attn.v_proj.weight.T).view(r, h, d)
            o = o + torch.einsum("htr,rhd->htd", pl, qv)
        out = o.transpose(0, 1).reshape(t, di) + st["v2"]
        return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)[None]

    @staticmethod
    def image_to_token(attn, st: dict, queries: Tensor, qpe: Tensor, state: dict) -> None:
        """Image->token attention, residual and ``norm4``: updates the low-rank state."""
        t, dm = queries.shape[1], queries.shape[2]
        h = attn.num_heads
        hw = state["hw"]
        kt = F.linear((queries + qpe)[0], attn.k_proj.weight, attn.k_proj.bias)  # (T, Di)
        vt = F.linear(queries[0], attn.v_proj.weight, attn.v_proj.bias)
        d = kt.shape[-1] // h
        kk = (kt * (1.0 / math.sqrt(d))).view(t, h, d).transpose(0, 1)  # (h, T, d)
        alpha, r, lt, rm = state["alpha"], state["r"], state["lt"], state["rm"]
        if alpha is None:
            s = torch.bmm(kk, st["q12"])  # (h, T, HW)
        else:
            s = torch.bmm(kk, st["q1"])
            if r:
                qq = (rm[:r] @ attn.q_proj.weight.T).view(r, h, d)
                w3 = torch.einsum("rhd,htd->htr", qq, kk).reshape(h * t, r)
                s.view(h * t, hw).addmm_(w3, lt[:r])
            s.mul_(alpha)
            s.baddbmm_(kk, st["q2"])
        a = torch.softmax(s, dim=1)  # over the tokens
        r1 = r + h * t
        dst = lt[r:r1].view(h, t, hw)
        if alpha is None:
            dst.copy_(a)
        else:
            torch.div(a, alpha, out=dst)
        wo = attn.out_proj.weight  # (D, Di)
        rm[r:r1] = torch.einsum(
            "thd,ehd->hte", vt.view(t, h, d), wo.view(dm, h, d)
        ).reshape(h * t, dm)
        state["vt"].append(vt.view(t, h, d))
        CachedDecoder.closed_form_norm(st, state, r1)

    @staticmethod
    def closed_form_norm(st: dict, state: dict, r1: int) -> None:
        """``norm4`` of ``alpha * (shc + Lt.T R) + c_res`` from Gram matrices; rank r1 + 1."""
        norm = st["norm"]
        alpha, lt, rm = state["alpha"], state["lt"], state["rm"]
        hw, dm = lt.shape[-1], rm.shape[-1]
        ltr, rr = lt[:r1], rm[:r1]
        rc = rr - rr.mean(-1, keepdim=True)
        # m = 2 * (R @ shc.T) from the shared per-head products (shc rows are centred)
        m = lt.new_empty(r1, hw)
        row = 0
        for i, (vtb, sx) in enumerate(zip(state["vt"], st["sx"])):
            hb, tb = sx.shape[0], vtb.shape[0]
            torch.bmm((2 * vtb).transpose(0, 1), sx, out=m[row : row + hb * tb].view(hb, tb, hw))
            row += hb * tb
            if i < len(st["sxc"]):
                m[row] = 2 * st["sxc"][i]
                row += 1
        m.addmm_(rc @ rc.T, ltr)
        quad = m.mul_(ltr).sum(0)  # (HW,)
        lin = (rc @ st["cc"]) @ ltr  # (HW,)
        if alpha is None:
            var = st["shc_n2"] + quad + 2 * (st["shc_cc"] + lin) + st["cc_n2"]
        else:
            var = alpha * alpha * (st["shc_n2"] + quad) + 2 * alpha * (st["shc_cc"] + lin)
            var += st["cc_n2"]
        rstd = torch.rsqrt(var.div_(dm).clamp_min_(0) + norm.eps)
        g = norm.weight
        lt[r1] = 1.0 if alpha is None else 1.0 / alpha
        rm[:r1] = rc * g
        rm[r1] = st["cc"] * g
        state["alpha"] = rstd if alpha is None else rstd * alpha
        state["r"] = r1 + 1

    def masks(self, cache: ClickCache, state: dict, hyper: Tensor) -> Tensor:
        """The upscaling head for one click: -> logits (1, C, 4E, 4E) float32.

        Both transposed convolutions have kernel = stride = 2, so output pixel
        ``(4 iy + 2 a + a2, 4 ix + 2 b + b2)`` comes from embedding pixel ``(iy, ix)``, the
        first convolution's tap ``(a, b)`` and the second's ``(a2, b2)``. The head runs on
        bands of embedding rows, once per ``(a, a2)``: each product with the hypernetwork
        vectors is then a band of whole output rows, written in place (no reordering).
        """
        up = self.dec.output_upscaling
        cd = self.dtype
        r = state["r"]
        alpha, lt, rm = state["alpha"], state["lt"][:r].to(cd), state["rm"][:r]
        hd = cache.head
        shw, w1, cw, w2, b2 = hd["shw"], hd["w1"], hd["cw"], hd["w2"], hd["b2"]
        rw = [(rm @ w).to(cd) for w in w1]  # per a: (r, (b, o))
        d4 = cw[0].shape[-1] // 2
        d8 = w2[0].shape[-1] // 2
        hyp = hyper[0].to(cd)  # (C, D8)
        c, e = hyp.shape[0], cache.side
        ln, act1, act2 = up[1], up[2], up[4]
        out = lt.new_empty(c, e, 2, 2, 4 * e)  # (C, iy, a, a2, (ix, b, b2))
        band = max(1, self.pixel_tile // e)  # embedding rows per step
        for i0 in range(0, e, band):
            i1 = min(i0 + band, e)
            n = i1 - i0
            p0, p1 = i0 * e, i1 * e
            lt_band, alpha_band = lt[:, p0:p1].T, alpha[p0:p1, None]
            for a in (0, 1):
                y = torch.addmm(shw[a][p0:p1], lt_band, rw[a])  # (pixels, (b, o))
                y = torch.addcmul(cw[a], alpha_band, y)  # float32
                y = act1(F.layer_norm(y.view(-1, d4), (d4,), ln.weight, ln.bias, ln.eps))
                y = y.to(cd)  # rows (iy, ix, b)
                for a2 in (0, 1):
                    z = act2(torch.addmm(b2[a2], y, w2[a2]))  # cols (b2, o)
                    rows = hyp @ z.view(-1, d8).T  # (C, (iy, ix, b, b2))
                    out[:, i0:i1, a, a2] = rows.view(c, n, 4 * e)
        return out.view(1, c, 4 * e, 4 * e).float()


def click_precision(device: torch.device, dtype: torch.dtype) -> str:
    """The :class:`CachedDecoder` precision for a predictor's device and compute dtype:
    "bf16" on the CPU when the predictor runs bfloat16 (what ``precision="auto"`` picks on
    CPUs with native bfloat16), "fp32" elsewhere (GPUs, where a click is not CPU-bound, and
    ``precision="fp32"``)."""
    return "bf16" if device.type == "cpu" and dtype == torch.bfloat16 else "fp32"


def upsample_click_logits(logits: Tensor, embedding, img_size: int) -> Tensor | None:
    """Low-resolution logits (..., L, L) -> float32 logits (..., H, W) in one bilinear pass,
    where that equals Meta's two passes (:func:`napari_sam.prompts.upsample_logits`) up to
    float rounding; None elsewhere (then use the two passes).

    The one pass (:func:`bilinear_2x`) is exact for a square image of half the model input
    side S whose low-resolution grid is S / 4 (ViT models, 512 px images): the two samples
    that the second pass averages for an output pixel lie in one cell of the low-resolution
    grid, so their average is the one-pass sample.

    Parameters
    ----------
    logits : Tensor (..., L, L)
    embedding : ImageEmbedding
        Anything with ``original_size`` and ``input_size`` (rows, cols).
    img_size : int
        The model's square input side S.
    """
    side = logits.shape[-1]
    h, w = (int(v) for v in embedding.original_size)
    if not (
        tuple(embedding.input_size) == (img_size, img_size)
        and 2 * h == img_size == 2 * w
        and 4 * side == img_size
        and logits.shape[-2] == side
    ):
        return None
    lead = logits.shape[:-2]
    x = bilinear_2x(logits.reshape(-1, side, side).float())
    return x.reshape(*lead, h, w)


def bilinear_2x(x: Tensor) -> Tensor:
    """Bilinear upsampling by exactly 2 along the last two axes, as
    ``F.interpolate(..., scale 2, mode="bilinear", align_corners=False)`` computes it (up to
    float rounding), in a few whole-array operations: for a click's three 256 px masks on
    one CPU thread 0.43 instead of 1.1 ms (docs/benchmarks.md, "Session 42").

    Output sample ``2 i`` lies a quarter of a cell before input sample ``i`` and ``2 i + 1`` a
    quarter after it, so each is ``0.75`` of the nearer input and ``0.25`` of the other
    neighbour; at the borders the neighbour is the sample itself (PyTorch's clamping).

    Parameters
    ----------
    x : Tensor (N, L, M) float

    Returns
    -------
    Tensor (N, 2 L, 2 M), the dtype of ``x``.
    """
    n, rows, cols = x.shape
    wide = x.new_empty(n, rows, cols, 2)  # (N, L, (M, 2))
    near = x * 0.75
    torch.add(near[:, :, 1:], x[:, :, :-1], alpha=0.25, out=wide[:, :, 1:, 0])
    torch.add(near[:, :, :-1], x[:, :, 1:], alpha=0.25, out=wide[:, :, :-1, 1])
    wide[:, :, 0, 0] = x[:, :, 0]
    wide[:, :, -1, 1] = x[:, :, -1]
    wide = wide.view(n, rows, 2 * cols)
    out = x.new_empty(n, rows, 2, 2 * cols)  # (N, (L, 2), 2M)
    near = wide * 0.75
    torch.add(near[:, 1:], wide[:, :-1], alpha=0.25, out=out[:, 1:, 0])
    torch.add(near[:, :-1], wide[:, 1:], alpha=0.25, out=out[:, :-1, 1])
    out[:, 0, 0] = wide[:, 0]
    out[:, -1, 1] = wide[:, -1]
    return out.view(n, 2 * rows, 2 * cols)
