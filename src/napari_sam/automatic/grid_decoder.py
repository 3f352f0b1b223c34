"""The grid decoder: SAM's mask decoder rewritten for many single-point prompts on one image
(:class:`GridDecoder`), exact up to float rounding, with its precision settings (TF32 on
CUDA, bfloat16 on CPUs where the predictor runs bfloat16)."""

from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_sam.models.decoder_terms import image_terms, positional_parts

#: GridDecoder arithmetic that ``precision="auto"`` (or "bf16" / "fp16") selects on a CUDA
#: device; "fp32" there keeps exact float32. See docs/benchmarks.md, "On a GPU".
GRID_PRECISION_CUDA = "tf32"
#: Whether GridDecoder fuses its upscaling head's add, scale, layer norm and GELU into one
#: Triton kernel on CUDA (when Triton is installed). Opt-in (``NAPARI_SAM_TRITON=1``):
#: importing Triton loads its own LLVM, which crashes napari on Mesa displays (VMs, Xvfb, X
#: forwarding), so a plain run never imports it.
GRID_FUSED_HEAD_CUDA = os.environ.get("NAPARI_SAM_TRITON", "0") == "1"


@contextlib.contextmanager
def _tf32_matmuls():
    """Allow TF32 in CUDA matrix products and convolutions, restoring the settings after."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def grid_precision(device: torch.device, dtype: torch.dtype) -> str:
    """GridDecoder precision for a predictor's device and compute dtype: float32 for
    ``precision="fp32"``; "bf16" on the CPU when the predictor runs bfloat16 (what
    ``precision="auto"`` picks on CPUs with native bfloat16); :data:`GRID_PRECISION_CUDA` for
    reduced precision on CUDA; float32 elsewhere (MPS, fp16 on the CPU)."""
    if dtype == torch.float32:
        return "fp32"
    if device.type == "cpu" and dtype == torch.bfloat16:
        return "bf16"
    if device.type != "cuda":
        return "fp32"
    return GRID_PRECISION_CUDA


class GridDecoder:
    """SAM's mask decoder specialised for many single positive points on one image.

    Mathematically identical to ``model.mask_decoder`` (with ``multimask_output=True``) for
    prompts made of one positive point; only floating-point rounding differs. Works for any
    decoder depth and width with Meta's module structure (ViT models and the demo model).

    How. Before the first image->token attention the image tokens are the same for every
    prompt. Each image->token attention adds, per pixel, a mix of ``H * T`` token vectors
    (H heads, T tokens), i.e. a low-rank term, and each layer norm rescales every pixel. So
    the image tokens of prompt n are carried exactly as
    ``K_n = alpha_n * (Sh + Lt_n.T @ R_n) + c`` with ``Sh`` (HW, D) and ``c`` (D,) shared by
    all prompts, ``alpha_n`` (HW,) per-pixel scales and ``Lt_n`` (r, HW), ``R_n`` (r, D) of
    rank r = depth * (H * (T - 1) + 1). Projections of ``Sh`` are computed once per image, layer
    norms in closed form (mean and variance of ``K_n`` from small Gram matrices), attention
    scores as shared GEMMs plus rank-r corrections. The upscaling head runs only for the
    prompts asked for (those with a candidate above ``pred_iou_thresh``).

    >>> dec = GridDecoder(model)
    >>> shared = dec.prepare(embedding.features)          # once per image
    >>> state = dec.tokens(shared, points_xy)               # (N, 2) x, y in the model input frame
    >>> state.iou                                          # (N, 3) predicted IoU, cheap
    >>> logits = dec.masks(shared, state, index)           # (n, 3, 4E, 4E) for chosen prompts

    ``precision``: "fp32" exact float32; "tf32" float32 storage with TF32 matrix products on
    CUDA (float32 on the CPU); "bf16" the per-pixel tensors of the token path (attention
    scores, the low-rank factors ``Lt``) and all matrix products in bfloat16, with the
    layer-norm statistics, softmax sums, token vectors and ``R`` kept in float32 (about 1.5x
    faster than float32 on an AVX-512 BF16 CPU; masks at IoU >= 0.97 with the float32 ones,
    see docs/benchmarks.md, "Segment everything at 256 px on one core"). Logits are float32
    in every case. ``segment_everything`` follows the predictor (see :func:`grid_precision`):
    "bf16" on a CPU where it runs bfloat16 (``precision="auto"`` on a CPU with native
    bfloat16), :data:`GRID_PRECISION_CUDA` for reduced precision on a GPU, else float32. On
    CUDA, where Triton is installed, the upscaling head's add, scale, layer norm and GELU run
    as one fused kernel (:mod:`napari_sam.kernels`;
    ``fused_head``).
    """

    PRECISIONS = ("fp32", "tf32", "bf16")

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
                layer.norm1, layer.norm2, layer.norm3, layer.norm4, layer.mlp  # noqa: B018
                if not isinstance(layer.norm4, torch.nn.LayerNorm):
                    return False
            tf.final_attn_token_to_image.q_proj, tf.norm_final_attn  # noqa: B018
            up = dec.output_upscaling
            model.prompt_encoder.no_mask_embed  # noqa: B018
            return bool(
                len(up) == 5
                and isinstance(up[0], torch.nn.ConvTranspose2d)
                and isinstance(up[3], torch.nn.ConvTranspose2d)
                and tuple(up[0].kernel_size) == (2, 2)
                and tuple(up[0].stride) == (2, 2)
                and tuple(up[3].kernel_size) == (2, 2)
                and tuple(up[3].stride) == (2, 2)
                and hasattr(up[1], "eps")
                and dec.num_mask_tokens > 1
            )
        except (AttributeError, TypeError, IndexError):
            return False

    def __init__(self, model, chunk: int | None = None, pixel_tile: int | None = None,
                 mask_chunk: int | None = None, precision: str = "fp32",
                 fused_head: bool | None = None):
        if precision not in self.PRECISIONS:
            raise ValueError(
                f"GridDecoder precision must be one of {', '.join(self.PRECISIONS)}, "
                f"not {precision!r}"
            )
        self.model = model
        self.precision = precision
        # None: the fused Triton kernel on CUDA where it compiles and runs (same numbers as
        # the PyTorch ops up to summation order); True: on any device where it runs (the CPU
        # under TRITON_INTERPRET=1); False: never. See kernels.fused_kernels_work.
        self.fused_head = fused_head
        # Work sizes (None: by device). On the CPU small steps keep intermediates in cache; on
        # a GPU each step is a few kernel launches, so steps are as large as memory allows.
        self.pixel_tile = None if pixel_tile is None else int(pixel_tile)
        self.mask_chunk = None if mask_chunk is None else int(mask_chunk)
        self.pe = model.prompt_encoder
        self.dec = model.mask_decoder
        self.tf = self.dec.transformer
        self.num_mask_tokens = int(self.dec.num_mask_tokens)
        # the positional parts of the decoder's terms, the same for every image: made on the
        # first prepare (a decoder serves one segment_everything call; new weights, new one)
        self._positional = None
        # prompts per token-path step (CPU default: 16384 image tokens per step in float32,
        # i.e. 4 prompts for a 64 x 64 embedding, 32768 in bfloat16; GPU: 2**20, 256 prompts)
        self.chunk = None if chunk is None else int(chunk)

    def _math(self, dev: torch.device):
        """TF32 matrix products for the duration of a call (CUDA, precision tf32)."""
        if dev.type != "cuda" or self.precision == "fp32":
            return contextlib.nullcontext()
        return _tf32_matmuls()

    # ------------------------------------------------------------------ shared per image
    def prepare(self, features: torch.Tensor) -> dict:
        """Prompt-independent tensors for one image embedding (D, E, E)
        (:func:`napari_sam.models.decoder_terms.image_terms`, the click decoder's too), with
        the token path's per-pixel tensors in its compute dtype."""
        if self._positional is None:
            self._positional = positional_parts(self.dec, self.pe)
        t = image_terms(self.dec, self.pe, features, self._positional)
        # R's rows times the projections that read them, per layer (see _r_project)
        for layer, st in zip(self.tf.layers, t.layers):
            t2i, maps = st["t2i"], st["r_maps"]
            t2i["k_proj"] = _maps_times(maps, t2i["attn"].k_proj.weight.T)
            t2i["v_proj"] = _maps_times(maps, t2i["attn"].v_proj.weight.T)
            st["q_proj"] = _maps_times(maps, layer.cross_attn_image_to_token.q_proj.weight.T)
        fa, maps = t.final, t.final["r_maps"]
        fa["k_proj"] = _maps_times(maps, fa["attn"].k_proj.weight.T)
        fa["v_proj"] = _maps_times(maps, fa["attn"].v_proj.weight.T)
        t.head["wf_maps"] = _maps_times(maps, t.head["wf"])
        cd = self._compute_dtype()
        _cast_per_pixel(t.layers, t.final, cd)
        return {
            "layers": t.layers,
            "final": t.final,
            **t.head,
            "side": t.side,
            "hw": t.hw,
            "dtype": cd,
        }

    # ------------------------------------------------------------------ token path
    @torch.inference_mode()
    def tokens(self, shared: dict, points_xy: torch.Tensor,
               workspace: dict | None = None) -> DecoderState:
        """Two-way transformer and IoU head for N single-point prompts.

        points_xy : (N, 2) float, (x, y) in the model input frame.
        workspace : a dict the caller keeps between calls, or None. Given, the state's
            low-rank factors ``lt`` (N, r, HW) and ``rm`` (N, r, D) are views into buffers
            kept in it and reused by the next call with it (no fresh pages per call: on a
            CPU, new large tensors cost page faults); the state is then valid until that
            next call.
        """
        dev = self.dec.iou_token.weight.device
        pts = torch.as_tensor(points_xy, device=dev).float()
        n = len(pts)
        # CPU: 16384 image tokens per step in float32, 32768 in bfloat16 (the same bytes)
        per_step = 2**20 if dev.type != "cpu" else 16384 * (4 // shared["dtype"].itemsize)
        step = self.chunk or max(1, per_step // shared["hw"])
        r_max = self._rank(self._token_count(pts))
        dm = int(self.dec.iou_token.weight.shape[1])
        # the low-rank factors of every chunk go straight into one tensor
        lt = _buffer(workspace, "lt", (n, r_max, shared["hw"]), shared["dtype"], dev)
        rm = _buffer(workspace, "rm", (n, r_max, dm), torch.float32, dev)
        with self._math(dev):
            parts = [
                self._tokens(shared, pts[i : i + step], lt[i : i + step], rm[i : i + step])
                for i in range(0, n, step)
            ]
        if len(parts) == 1:
            return parts[0]
        r = parts[0].lt.shape[1]
        return DecoderState(*(torch.cat(x, 0) for x in zip(*((p.iou, p.hyper, p.alpha)
                                                              for p in parts))),
                            lt[:, :r], rm[:, :r],
                            [torch.cat(v, 0) for v in zip(*(p.vt for p in parts))])

    def _token_count(self, pts: torch.Tensor) -> int:
        """Tokens T of the two-way transformer for a single-point prompt: the output tokens
        and the prompt encoder's sparse tokens (the point and its padding)."""
        one = torch.ones(1, 1, dtype=torch.int64, device=pts.device)
        sparse, _ = self.pe(points=(pts[:1, None, :], one), boxes=None, masks=None)
        return 1 + self.num_mask_tokens + int(sparse.shape[1])

    def _rank(self, t: int) -> int:
        """Rows r of the low-rank factors after the last layer, for T = ``t`` tokens: per
        layer H * (T - 1) softmax rows and one constant row (see :meth:`_image_to_token`)."""
        return sum(ly.cross_attn_image_to_token.num_heads * (t - 1) + 1 for ly in self.tf.layers)

    def _tokens(self, shared: dict, pts: torch.Tensor, lt_out=None, rm_out=None) -> DecoderState:
        """:meth:`tokens` of one chunk; ``lt_out``, ``rm_out``: (n, r, HW), (n, r, D) tensors
        to hold its low-rank factors (None: new ones)."""
        dev = pts.device
        n = pts.shape[0]
        labels = torch.ones(n, 1, dtype=torch.int64, device=dev)
        sparse, _ = self.pe(points=(pts[:, None, :], labels), boxes=None, masks=None)
        out_tok = torch.cat([self.dec.iou_token.weight, self.dec.mask_tokens.weight], 0)
        tokens = torch.cat([out_tok[None].expand(n, -1, -1), sparse.float()], 1)
        t = tokens.shape[1]
        dm = tokens.shape[2]
        hw = shared["hw"]
        r_max = self._rank(t)
        # scaled low-rank factors, (n, r, HW) and (n, r, D)
        cd = shared["dtype"]
        lt = torch.empty(n, r_max, hw, device=dev, dtype=cd) if lt_out is None else lt_out
        rm = torch.empty(n, r_max, dm, device=dev) if rm_out is None else rm_out
        state = {"alpha": None, "alpha_c": None, "r": 0, "lt": lt, "rm": rm, "vt": [],
                 "rows": None}
        qpe = tokens
        queries = tokens
        for layer, st in zip(self.tf.layers, shared["layers"]):
            queries = layer.token_self_attention(queries, qpe)
            queries = layer.norm2(queries + self._token_to_image(st["t2i"], queries + qpe, state))
            queries = layer.norm3(queries + layer.mlp(queries))
            self._image_to_token(layer.cross_attn_image_to_token, st, queries, qpe, state)
        # the final attention only for the tokens read after it: the IoU token and the mask
        # tokens of the multimask outputs (each query row attends on its own)
        used = [0, *range(2, 1 + self.num_mask_tokens)]
        queries = queries[:, used]
        att = self._token_to_image(shared["final"], queries + qpe[:, used], state)
        queries = self.tf.norm_final_attn(queries + att)
        iou = self.dec.iou_prediction_head(queries[:, 0])
        hyper = torch.stack(
            [
                self.dec.output_hypernetworks_mlps[i](queries[:, i])
                for i in range(1, self.num_mask_tokens)
            ],
            1,
        )
        r = state["r"]
        return DecoderState(iou[:, 1:].float(), hyper, state["alpha"], lt[:, :r], rm[:, :r],
                            state["vt"])

    @staticmethod
    def _token_to_image(st, q_in, state):
        """Cross-attention of the prompt tokens (n, T, D) to the image tokens of each prompt."""
        attn = st["attn"]
        n, t, _ = q_in.shape
        h = attn.num_heads
        hw = st["k1"].shape[-1]
        q = F.linear(q_in, attn.q_proj.weight, attn.q_proj.bias)
        di = q.shape[-1]
        d = di // h
        qh = q.view(n, t, h, d) * (1.0 / math.sqrt(d))
        cd = st["k1"].dtype
        qs = qh.permute(2, 0, 1, 3).reshape(h, n * t, d).to(cd)
        alpha, r = state["alpha_c"], state["r"]
        if r == 0 and alpha is None and "k12" in st:  # first layer: no per-prompt part
            p = torch.softmax(torch.bmm(qs, st["k12"]), dim=-1)
            o = torch.bmm(p, st["v1"]).view(h, n, t, d).float()
            out = o.permute(1, 2, 0, 3).reshape(n, t, di) + st["v2"]
            return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)
        s = torch.bmm(qs, st["k1"])  # (h, n*t, hw)
        s4 = s.view(h, n, t, hw)
        if r:
            lt = _lt_rows(state, r)
            qk = _r_project(state, st["k_proj"], r).to(cd).view(n, r, h, d)
            g = torch.einsum("nthd,nrhd->nhtr", qh.to(cd), qk).reshape(n, h * t, r)
            s4 += torch.bmm(g, lt).view(n, h, t, hw).permute(1, 0, 2, 3)
        if alpha is not None:
            s4 *= alpha[None, :, None, :]
        s.baddbmm_(qs, st["k2"])
        p = torch.softmax(s, dim=-1)
        if alpha is not None:
            p.view(h, n, t, hw).mul_(alpha[None, :, None, :])
        o = torch.bmm(p, st["v1"]).view(h, n, t, d).float()
        if r:
            pn = p.view(h, n, t, hw).permute(1, 0, 2, 3).reshape(n, h * t, hw)
            pl = torch.bmm(pn, lt.transpose(1, 2)).view(n, h, t, r)
            qv = _r_project(state, st["v_proj"], r).to(cd).view(n, r, h, d)
            o = o + torch.einsum("nhtr,nrhd->hntd", pl, qv).float()
        out = o.permute(1, 2, 0, 3).reshape(n, t, di) + st["v2"]
        return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)

    @staticmethod
    def _image_to_token(attn, st, queries, qpe, state):
        """Image->token attention, residual and layer norm, updating the low-rank state."""
        n, t, dm = queries.shape
        h = attn.num_heads
        hw = st["q1"].shape[-1]
        kt = F.linear(queries + qpe, attn.k_proj.weight, attn.k_proj.bias)
        vt = F.linear(queries, attn.v_proj.weight, attn.v_proj.bias)
        di = kt.shape[-1]
        d = di // h
        khd = kt.view(n, t, h, d) * (1.0 / math.sqrt(d))
        cd = st["q1"].dtype
        kk = khd.permute(2, 0, 1, 3).reshape(h, n * t, d).to(cd)
        alpha, r, lt, rm = state["alpha_c"], state["r"], state["lt"], state["rm"]
        first = r == 0 and alpha is None and "q12" in st  # no per-prompt part: one product
        s = torch.bmm(kk, st["q12"] if first else st["q1"])  # (h, n*t, hw)
        s4 = s.view(h, n, t, hw)
        if r:
            qq = _r_project(state, st["q_proj"], r).to(cd).view(n, r, h, d)
            w3 = torch.einsum("nrhd,nthd->nhtr", qq, khd.to(cd)).reshape(n, h * t, r)
            s4 += torch.bmm(w3, _lt_rows(state, r)).view(n, h, t, hw).permute(1, 0, 2, 3)
        if alpha is not None:
            s4 *= alpha[None, :, None, :]
        if not first:
            s.baddbmm_(kk, st["q2"])
        a = torch.softmax(s4, dim=2)  # over the tokens, (h, n, t, hw)
        # Each head's softmax row sums to 1 over the tokens, so its last token's row is the
        # constant row (1 / alpha) less the others: the layer keeps H * (T - 1) rows
        # a_t / alpha with R rows (v_t - v_last) Wo, and one constant row 1 / alpha whose R
        # row is sum over heads of v_last Wo (plus, after the layer norm, its constant part).
        r1 = r + h * (t - 1)
        dst = lt[:, r:r1].view(n, h, t - 1, hw)
        if alpha is None:
            dst.copy_(a[:, :, :-1].permute(1, 0, 2, 3))
        else:
            torch.div(a[:, :, :-1].permute(1, 0, 2, 3), alpha[:, None, None, :], out=dst)
        alpha = state["alpha"]
        lt[:, r1] = 1.0 if alpha is None else 1.0 / alpha
        vd = _token_differences(vt.view(n, t, h, d))
        state["vt"].append(vd)
        wo = attn.out_proj.weight  # (D, Di)
        e = torch.einsum("nthd,ehd->nhte", vd, wo.view(dm, h, d))  # (n, h, t, D)
        rm[:, r:r1] = e[:, :, :-1].reshape(n, h * (t - 1), dm)
        rm[:, r1] = e[:, :, -1].sum(1)
        # layer norm of alpha * (shc + Lt.T R) + c_res, in closed form: r1 + 1 rows are the
        # whole of ``lt`` after the last layer, so the products read it in place, without a
        # copy of a slice.
        norm = st["norm"]
        ltr, rr = _lt_rows(state, r1 + 1), rm[:, : r1 + 1]
        rc = rr - rr.mean(-1, keepdim=True)  # (n, r1 + 1, D)
        m = torch.bmm((rc @ rc.transpose(1, 2)).to(cd), ltr)  # (n, r1 + 1, hw)
        # m += 2 * (R @ shc.T) from the shared per-head products (shc rows are centred)
        row = 0
        for i, (vtb, sx) in enumerate(zip(state["vt"], st["sx"])):
            hb = sx.shape[0]
            vv = (2 * vtb).permute(2, 0, 1, 3).reshape(hb, n * t, -1).to(cd)
            prod = torch.bmm(vv, sx).view(hb, n, t, hw)
            m[:, row : row + hb * (t - 1)].view(n, hb, t - 1, hw).add_(
                prod[:, :, :-1].permute(1, 0, 2, 3))
            row += hb * (t - 1)
            m[:, row] += prod[:, :, -1].sum(0)
            if i < len(st["sxc"]):
                m[:, row] += 2 * st["sxc"][i]
            row += 1
        # (bfloat16 products of ``precision="bf16"`` are summed with float32 accumulation)
        quad = m.mul_(ltr).sum(1).float()  # (n, hw)
        lin = torch.bmm((rc @ st["cc"])[:, None, :].to(cd), ltr)[:, 0].float()
        if alpha is None:
            var = st["shc_n2"] + quad + 2 * (st["shc_cc"] + lin) + st["cc_n2"]
        else:
            var = alpha * alpha * (st["shc_n2"] + quad) + 2 * alpha * (st["shc_cc"] + lin)
            var += st["cc_n2"]
        rstd = torch.rsqrt(var.div_(dm).clamp_min_(0) + norm.eps)  # (n, hw)
        g = norm.weight
        rm[:, : r1 + 1] = rc * g
        rm[:, r1] += st["cc"] * g
        state["alpha"] = rstd if alpha is None else rstd * alpha
        state["alpha_c"] = state["alpha"].to(cd)
        state["r"] = r1 + 1

    # ------------------------------------------------------------------ mask path
    @torch.inference_mode()
    def masks(self, shared: dict, state: DecoderState, index: torch.Tensor) -> torch.Tensor:
        """Low-resolution mask logits (n, C, 4E, 4E) of the prompts ``index`` of ``state``."""
        index = torch.as_tensor(index, device=state.iou.device).reshape(-1)
        step = self.mask_chunk or (16 if index.device.type == "cpu" else 64)
        with self._math(index.device):
            parts = [self._masks(shared, state, index[i : i + step])
                     for i in range(0, len(index), step)]
        if not parts:
            e = 4 * shared["side"]
            return state.iou.new_zeros(0, state.iou.shape[1], e, e)
        return parts[0] if len(parts) == 1 else torch.cat(parts, 0)

    def _use_fused_head(self, dev: torch.device) -> bool:
        from napari_sam import kernels

        up = self.dec.output_upscaling
        exact_gelu = isinstance(up[2], torch.nn.GELU) and up[2].approximate == "none"
        if self.fused_head is False or not exact_gelu:
            return False
        if self.fused_head is None and (dev.type != "cuda" or not GRID_FUSED_HEAD_CUDA):
            return False
        return kernels.fused_kernels_work(str(dev))

    def _compute_dtype(self) -> torch.dtype:
        """Storage and matrix-product dtype of the per-pixel tensors of the token path:
        bfloat16 for ``precision="bf16"``, else float32 (layer-norm statistics, softmax
        sums, queries and token values are float32 either way)."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def _bf16_head(self, dev: torch.device) -> bool:
        """Whether the upscaling head's matrix products run in bfloat16 (``precision="bf16"``,
        on any device: the token path's factors are bfloat16 then)."""
        return self.precision == "bf16"

    def _masks(self, shared, state, index):
        up = self.dec.output_upscaling
        alpha, lt, rm = state.alpha[index], state.lt[index], state.rm[index]
        hyper = state.hyper[index]  # (n, C, D8)
        n, _, hw = lt.shape
        if state.vt is None:
            rw = rm @ shared["wf"]  # (n, r, 4*D4)
        else:  # the same from the token values: (T d) instead of (r D) per output value
            rw = _r_project({"vt": [v[index] for v in state.vt]}, shared["wf_maps"], rm.shape[1])
        shw, cw, w2f, b2 = shared["shw"], shared["cw"], shared["w2f"], shared["b2"]
        d4 = shw.shape[-1] // 4
        d8 = w2f.shape[-1] // 4
        c = hyper.shape[1]
        ln = up[1]
        ln_w, ln_b = ln.weight, ln.bias
        out = torch.empty(n, c, hw, 16, device=lt.device)
        fused = (self._use_fused_head(lt.device) and shw.dtype == ln_w.dtype == torch.float32
                 and not self._bf16_head(lt.device))
        if fused:
            from napari_sam.kernels import affine_layernorm_gelu_

            alpha, ln_w, ln_b = alpha.contiguous(), ln_w.contiguous(), ln_b.contiguous()
        # Pixel tiles keep the (n, tile, 4*D4) and (n, tile, 16*D8) intermediates in cache;
        # every output pixel depends on its own embedding pixel only.
        pixels = self.pixel_tile or (1024 if lt.device.type == "cpu" else 2**18)
        tile = max(16, pixels // max(n, 1))
        low = self._bf16_head(lt.device)
        if low:  # the three matrix products in bfloat16 (float32 accumulation)
            lt, rw = lt.to(torch.bfloat16), rw.to(torch.bfloat16)
            hyper, w2f, b2 = (x.to(torch.bfloat16) for x in (hyper, w2f, b2))
        for p0 in range(0, hw, tile):
            p1 = min(p0 + tile, hw)
            k = p1 - p0
            y = torch.bmm(lt[:, :, p0:p1].transpose(1, 2), rw)  # (n, k, 4*D4)
            if fused:  # the four steps below in one pass over y
                y = affine_layernorm_gelu_(y, shw, alpha, cw, ln_w, ln_b, ln.eps, p0)
            else:
                y = y.float() if low else y
                y += shw[p0:p1]
                y = torch.addcmul(cw, alpha[:, p0:p1, None], y, out=y)
                y = F.layer_norm(y.view(n, k * 4, d4), (d4,), ln_w, ln_b, ln.eps)
                y = up[2](y.to(torch.bfloat16) if low else y)
            z = torch.addmm(b2, y.view(-1, d4), w2f)  # (n*k*4, 4*D8)
            z = up[4](z).view(n, k * 16, d8)
            out[:, :, p0:p1] = torch.bmm(hyper, z.transpose(1, 2)).view(n, c, k, 16)
        e = shared["side"]
        # ``out`` (n, C, pixel (iy, ix), (a, b, a2, b2)): (a, b) from the first and (a2, b2)
        # from the second transposed convolution; output pixel (4 iy + 2 a + a2, 4 ix + 2 b + b2).
        # One gather along each row: the permuted copy's inner loop runs over 2 values, 10x
        # slower on a CPU.
        m = out.view(n * c, hw * 16).index_select(1, _pixel_order(e, out.device))
        return m.view(n, c, 4 * e, 4 * e)


@torch.inference_mode()
def _maps_times(maps: tuple, w: torch.Tensor) -> tuple[list, list]:
    """``maps`` (``r_maps`` of :func:`~napari_sam.models.decoder_terms.image_terms`: per
    earlier layer a (h, d, D) block and a (D,) constant row) times ``w`` (D, E): per layer a
    (h, d, E) map from its token values and an (E,) constant row (see :func:`_r_project`)."""
    blocks, consts = maps
    w = w.float()
    return [b @ w for b in blocks], [v @ w for v in consts]


def _r_project(state: dict, maps: tuple, r: int) -> torch.Tensor:
    """``R[:, :r] @ W`` (n, r, E) float32 from the token values ``state["vt"]`` (per layer
    (n, T, h, d)) and ``maps`` of :func:`_maps_times`: R's rows of one layer are its token
    values through a map shared by every prompt, so the product costs T * d instead of
    r * D multiply-adds per output value and row block."""
    parts = []
    for vt, pb, pc in zip(state["vt"], *maps):
        n, t, h, _ = vt.shape
        p = torch.einsum("nthd,hde->nhte", vt, pb)  # (n, h, t, E)
        parts.append(p[:, :, :-1].reshape(n, h * (t - 1), -1))
        parts.append((pc + p[:, :, -1].sum(1))[:, None])
    out = torch.cat(parts, 1)
    if out.shape[1] != r:
        raise RuntimeError(f"grid decoder: {out.shape[1]} rows of R from the token values, "
                           f"the state has {r}")
    return out


@functools.lru_cache(maxsize=8)
def _pixel_order(e: int, device: torch.device) -> torch.Tensor:
    """(16 E * E,) int64: for each pixel of a (4E, 4E) mask in row-major order, its place in
    the upscaling head's output row (pixel (iy, ix), then (a, b, a2, b2))."""
    idx = torch.arange(16 * e * e, device=device).view(e, e, 2, 2, 2, 2)
    return idx.permute(0, 2, 4, 1, 3, 5).reshape(-1)


def _token_differences(vt: torch.Tensor) -> torch.Tensor:
    """(n, T, h, d) token values -> the same shape: ``v_t - v_last`` for the first T - 1
    tokens, ``v_last`` in the last place (what R's rows of a layer are made from)."""
    out = vt - vt[:, -1:]
    out[:, -1] = vt[:, -1]
    return out


def _lt_rows(state: dict, r: int) -> torch.Tensor:
    """The first ``r`` rows of the low-rank factors ``state["lt"]`` (n, r_max, HW), rows that
    are final when asked for. A slice in float32; in bfloat16, whose matrix products copy a
    slice that is not contiguous on every call, one contiguous copy per ``r``, kept in
    ``state["rows"]``."""
    lt = state["lt"]
    if r == lt.shape[1] or lt.dtype == torch.float32:
        return lt[:, :r]
    rows = state["rows"]
    if rows is None or rows.shape[1] != r:
        rows = state["rows"] = lt[:, :r].contiguous()
    return rows


def _buffer(workspace: dict | None, key: str, shape: tuple, dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of ``shape``: a view into ``workspace[key]`` when that buffer
    is large enough and of the same dtype and device (grown, and kept there, otherwise), or a
    new tensor without a workspace."""
    need = math.prod(shape)
    if workspace is None:
        return torch.empty(shape, dtype=dtype, device=device)
    buf = workspace.get(key)
    if buf is None or buf.numel() < need or buf.dtype != dtype or buf.device != device:
        buf = workspace[key] = torch.empty(need, dtype=dtype, device=device)
    return buf[:need].view(shape)


def _cast_per_pixel(layers: list[dict], final: dict, dtype: torch.dtype) -> None:
    """Cast, in place, the shared per-pixel tensors of :meth:`GridDecoder.prepare` that the
    token path multiplies with (keys, queries, values, the layer-norm products) to ``dtype``."""
    if dtype == torch.float32:
        return
    for st in [*layers, {"t2i": final}]:
        kv = st["t2i"]
        kv.update({k: v.to(dtype) for k, v in kv.items() if k in ("k1", "k2", "k12", "v1")})
        if "q1" in st:
            st.update({k: v.to(dtype) for k, v in st.items() if k in ("q1", "q2", "q12")})
            st["sx"] = [x.to(dtype) for x in st["sx"]]
            st["sxc"] = [x.to(dtype) for x in st["sxc"]]


@dataclass
class DecoderState:
    """Per-prompt output of :meth:`GridDecoder.tokens`."""

    iou: torch.Tensor  # (N, C) predicted IoU of the multimask outputs
    hyper: torch.Tensor  # (N, C, D8) hypernetwork outputs
    alpha: torch.Tensor  # (N, HW)
    lt: torch.Tensor  # (N, r, HW)
    rm: torch.Tensor  # (N, r, D)
    #: per layer its token values (N, T, h, d), the last token's subtracted from the others
    #: (:func:`_token_differences`): R's rows through maps shared by all prompts
    vt: list | None = None

    def astuple(self):
        return (self.iou, self.hyper, self.alpha, self.lt, self.rm)

