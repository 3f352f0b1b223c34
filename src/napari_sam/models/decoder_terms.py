"""The prompt-independent terms of SAM's mask decoder for one image embedding: what the click
decoder (:class:`napari_sam.models.cached_decoder.CachedDecoder`) and the grid decoder of
segment everything (:class:`napari_sam.automatic.grid_decoder.GridDecoder`) compute once per
image (:func:`image_terms`), and the positional parts that are the same for every image
(:func:`positional_parts`).

The algebra (both decoders' docstrings say more): before the first image->token attention the
image tokens do not depend on the prompt; each image->token attention adds a low-rank term and
each layer norm rescales every pixel, so the image tokens stay ``alpha * (Sh + Lt.T @ R) + c``
with ``Sh`` and ``c`` per image. These are the per-image products of ``Sh``: the keys, values
and queries of every attention, the parts of each ``norm4`` that do not depend on the prompt,
and the first transposed convolution of the upscaling head applied to ``Sh``. Float32 math.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ImageTerms", "heads_t", "image_terms", "positional_parts"]


def heads_t(x: Tensor, h: int) -> Tensor:
    """(HW, Di) -> (h, Di / h, HW) contiguous: one projection split into heads, transposed."""
    return x.T.reshape(h, -1, x.shape[0]).contiguous()


def positional_parts(decoder, prompt_encoder) -> list[Tensor]:
    """The projections of the positional encoding plus each layer's constant input
    (``norm4.bias`` of the layer before): the same for every image.

    Parameters
    ----------
    decoder : MaskDecoder
        The model's mask decoder (``model.mask_decoder``).
    prompt_encoder : PromptEncoder
        The model's prompt encoder (its dense positional encoding).

    Returns
    -------
    list of Tensor
        Per layer the token->image keys' part and the image->token queries' part, then the
        final attention's keys' part, each (h, d, HW) float32.
    """
    tf = decoder.transformer
    pos = prompt_encoder.get_dense_pe()[0].float().flatten(1).T.contiguous()  # (HW, D)
    c = torch.zeros(pos.shape[1], device=pos.device)
    parts = []
    for layer in tf.layers:
        for attn, proj in ((layer.cross_attn_token_to_image, "k_proj"),
                           (layer.cross_attn_image_to_token, "q_proj")):
            lin = getattr(attn, proj)
            parts.append(heads_t(pos @ lin.weight.T + (c @ lin.weight.T + lin.bias),
                                 attn.num_heads))  # fmt: skip
        c = layer.norm4.bias.float()
    fa = tf.final_attn_token_to_image
    k = pos @ fa.k_proj.weight.T + (c @ fa.k_proj.weight.T + fa.k_proj.bias)
    return [*parts, heads_t(k, fa.num_heads)]


def _kv(attn, sh: Tensor, k2: Tensor, c: Tensor) -> dict:
    """Keys (h, d, HW) and values (h, HW, d) of ``sh`` (HW, D), per head; ``k2``: the keys'
    positional and constant part (h, d, HW)."""
    h = attn.num_heads
    hw = sh.shape[0]
    wv, bv = attn.v_proj.weight, attn.v_proj.bias
    return {
        "attn": attn,
        "k1": heads_t(sh @ attn.k_proj.weight.T, h),
        "k2": k2,
        "v1": (sh @ wv.T).reshape(hw, h, -1).permute(1, 0, 2).contiguous(),
        "v2": c @ wv.T + bv,
    }


@dataclass
class ImageTerms:
    """The prompt-independent tensors of one image embedding (:func:`image_terms`).

    Attributes
    ----------
    layers : list of dict
        Per transformer layer: ``"t2i"`` (token->image keys ``k1`` + ``k2`` and values
        ``v1`` + ``v2``; the first layer also ``k12``, their sum), the image->token queries
        ``q1`` + ``q2`` (first layer: ``q12``), and the parts of ``norm4`` that do not depend
        on the prompt (``sx``, ``sxc``, ``shc_n2``, ``shc_cc``, ``cc``, ``cc_n2``, ``norm``),
        and ``r_maps``: the rows of ``R`` this layer reads, as ``(blocks, consts)``: per
        earlier layer a (h, d, D) map from that layer's token values (n, T, h, d) to its h * T
        rows, and its constant row (D,) (every later layer norm applied).
    final : dict
        Keys and values of the final token->image attention, and its ``r_maps``.
    head : dict
        ``wf`` (D, 4 D4) the first transposed convolution as a matrix, ``shw`` (HW, 4 D4) it
        applied to ``Sh``, ``cw`` (4 D4,) to the constant part plus its bias, ``w2f``
        (D4, 4 D8) and ``b2`` the second transposed convolution.
    side, hw : int
        E and E * E.
    """

    layers: list
    final: dict
    head: dict
    side: int
    hw: int


@torch.inference_mode()
def image_terms(decoder, prompt_encoder, features: Tensor,
                positional: list[Tensor] | None = None) -> ImageTerms:
    """The prompt-independent tensors of one image embedding (D, E, E), float32 math.

    About 2 G multiply-adds for ViT-B's decoder (a little more than one plain decoder call).

    Parameters
    ----------
    decoder, prompt_encoder
        The model's mask decoder and prompt encoder.
    features : Tensor (D, E, E)
        The image embedding.
    positional : list of Tensor, optional
        :func:`positional_parts` of this model (computed when not given; pass them to reuse
        them between images).
    """
    dev = decoder.iou_token.weight.device
    feats = features.to(dev).float()
    dm = feats.shape[0]
    tf = decoder.transformer
    dense = prompt_encoder.no_mask_embed.weight[0].float()
    sh = (feats + dense[:, None, None]).flatten(1).T.contiguous()  # (HW, D)
    if positional is None:
        positional = positional_parts(decoder, prompt_encoder)
    c = torch.zeros(dm, device=dev)
    layers = []
    # R's rows are (token value of one head) @ (that head's out-projection rows), centred
    # and scaled by later layer norms: a shared (d, D) matrix per head (``blocks``); the
    # constant rows added by each layer norm are ``consts``.
    blocks: list[Tensor] = []
    consts: list[Tensor] = []
    for i, layer in enumerate(tf.layers):
        st = {"t2i": _kv(layer.cross_attn_token_to_image, sh, positional[2 * i], c)}
        st["r_maps"] = (list(blocks), list(consts))  # R's rows as this layer reads them
        i2t = layer.cross_attn_image_to_token
        h = i2t.num_heads
        st["q1"] = heads_t(sh @ i2t.q_proj.weight.T, h)
        st["q2"] = positional[2 * i + 1]
        if i == 0:  # the first layer's image tokens are the same for every prompt
            st["t2i"]["k12"] = st["t2i"]["k1"] + st["t2i"]["k2"]
            st["q12"] = st["q1"] + st["q2"]
        c_res = c + i2t.out_proj.bias
        shc = sh - sh.mean(1, keepdim=True)
        cc = c_res - c_res.mean()
        blocks.append(i2t.out_proj.weight.T.reshape(h, -1, dm))  # (h, d, D)
        st["sx"] = [torch.matmul(b, shc.T) for b in blocks]  # (h, d, HW) each
        st["sxc"] = [shc @ v for v in consts]  # (HW,) each
        st["shc_n2"] = (shc * shc).sum(1)
        st["shc_cc"] = shc @ cc
        st["cc"] = cc
        st["cc_n2"] = cc @ cc
        st["norm"] = layer.norm4
        layers.append(st)
        g = layer.norm4.weight
        blocks = [(b - b.mean(-1, keepdim=True)) * g for b in blocks]
        consts = [(v - v.mean()) * g for v in consts] + [cc * g]
        sh = shc * g
        c = layer.norm4.bias.float().clone()
    final = _kv(tf.final_attn_token_to_image, sh, positional[-1], c)
    final["r_maps"] = (blocks, consts)
    up = decoder.output_upscaling
    w1 = up[0].weight  # (D, D4, 2, 2)
    wf = w1.permute(0, 2, 3, 1).reshape(dm, -1)  # columns (a, b, o)
    w2 = up[3].weight  # (D4, D8, 2, 2)
    head = {
        "wf": wf,
        "shw": sh @ wf,  # (HW, 4 * D4)
        "cw": c @ wf + up[0].bias.repeat(4),
        "w2f": w2.permute(0, 2, 3, 1).reshape(w2.shape[0], -1),  # columns (a2, b2, o2)
        "b2": up[3].bias.repeat(4),
    }
    return ImageTerms(layers, final, head, int(feats.shape[-1]), int(sh.shape[0]))
