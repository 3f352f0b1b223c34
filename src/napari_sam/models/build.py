"""Building models: an untrained :class:`Sam` from a :class:`SamConfig`, one from a
state_dict (checked key by key, shape by shape), and one from a checkpoint file.

The configs live in :mod:`.config`, reading checkpoint files in :mod:`.checkpoint`; their
public names are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import read_checkpoint, stale_metadata_note
from .config import CONFIGS, SamConfig, architecture_name, config_from_state_dict
from .image_encoder import ImageEncoderCNN, ImageEncoderViT
from .mask_decoder import MaskDecoder, TwoWayTransformer
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .tiny_vit import ImageEncoderTinyViT

__all__ = [
    "SamConfig",
    "CONFIGS",
    "build_sam",
    "build_image_encoder",
    "config_from_state_dict",
    "sam_from_state_dict",
    "read_checkpoint",
    "load_checkpoint",
    "architecture_name",
]

logger = logging.getLogger(__name__)

#: per ``SamConfig.encoder``: the image encoder class and, for each of its constructor
#: arguments, the :class:`SamConfig` field that gives it
ENCODERS: dict[str, tuple[type[nn.Module], dict[str, str]]] = {
    "vit": (
        ImageEncoderViT,
        {
            "img_size": "img_size",
            "patch_size": "patch_size",
            "embed_dim": "encoder_embed_dim",
            "depth": "encoder_depth",
            "num_heads": "encoder_num_heads",
            "mlp_ratio": "encoder_mlp_ratio",
            "out_chans": "prompt_embed_dim",
            "window_size": "window_size",
            "global_attn_indexes": "encoder_global_attn_indexes",
        },
    ),
    "cnn": (
        ImageEncoderCNN,
        {
            "img_size": "img_size",
            "widths": "cnn_widths",
            "depths": "cnn_depths",
            "fpn_dim": "cnn_fpn_dim",
            "out_chans": "prompt_embed_dim",
        },
    ),
    "tiny_vit": (
        ImageEncoderTinyViT,
        {
            "img_size": "img_size",
            "embed_dims": "tiny_embed_dims",
            "depths": "tiny_depths",
            "num_heads": "tiny_num_heads",
            "window_sizes": "tiny_window_sizes",
            "mlp_ratio": "encoder_mlp_ratio",
            "mbconv_expand_ratio": "tiny_mbconv_ratio",
            "num_classes": "tiny_num_classes",
            "out_chans": "prompt_embed_dim",
        },
    ),
}


def build_image_encoder(config: SamConfig) -> nn.Module:
    """The (untrained) image encoder of ``config``: (B, 3, S, S) -> (B, 256, E, E)."""
    cls, arguments = ENCODERS[config.encoder]
    return cls(**{arg: getattr(config, field) for arg, field in arguments.items()})


def build_sam(config: SamConfig | Mapping[str, Any] | str) -> Sam:
    """Build an (untrained) model of the given architecture, in eval mode.

    ``config`` may be a :class:`SamConfig`, its dict, or a key of :data:`CONFIGS`.
    """
    if isinstance(config, str):
        config = CONFIGS[config]
    elif not isinstance(config, SamConfig):
        config = SamConfig.from_dict(config)
    e = config.embedding_size
    sam = Sam(
        image_encoder=build_image_encoder(config),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(e, e),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=config.prompt_embed_dim,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                num_heads=config.decoder_num_heads,
                mlp_dim=config.decoder_mlp_dim,
            ),
            num_multimask_outputs=config.num_multimask_outputs,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        config=config,
    )
    return sam.eval()


def sam_from_state_dict(
    sd: Mapping[str, Tensor], config: SamConfig | Mapping[str, Any] | None = None
) -> Sam:
    """Build a model and load ``sd`` strictly.

    Parameters
    ----------
    sd : mapping of str to Tensor
        Keys of Meta's ``Sam`` (no wrapper prefixes; see :func:`read_checkpoint`).
    config : SamConfig or dict, optional
        Expected architecture; inferred from the shapes when omitted.

    Raises
    ------
    ValueError
        Missing / unexpected keys or shape mismatches, naming the checkpoint's architecture
        and the expected one (e.g. "checkpoint is a vit_l model but the config is vit_b").
    """
    if config is not None and not isinstance(config, SamConfig):
        config = SamConfig.from_dict(config)
    if config is None:
        config = config_from_state_dict(sd)
    # The model is built for real (on the CPU) and its own state_dict gives the expected
    # shapes. Not a skeleton under ``torch.device("meta")``: random initialisers on the meta
    # device go through PyTorch's prims, which import torch._dynamo and with it triton; on
    # Mesa/llvmpipe displays triton's LLVM clashes with Mesa's and napari segfaults.
    sam = build_sam(config)
    problem = _mismatch(sd, sam.state_dict(), config)
    if problem:
        raise ValueError(problem)
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(
            f"the weights contain NaN or inf in {len(bad)} tensors (e.g. {', '.join(bad[:3])}): "
            "the file is corrupt or the training that wrote it diverged; download it again or "
            "use an earlier checkpoint"
        )
    sam.load_state_dict(dict(sd), strict=True)
    return sam


def _mismatch(sd: Mapping[str, Tensor], expected: Mapping[str, Tensor], config: SamConfig) -> str:
    """Why ``sd`` does not fit a model of ``config`` whose state_dict is ``expected`` (missing
    and unexpected keys, shape mismatches, naming both architectures), or "" when it fits."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if "image_encoder.input_size" in sd and "image_encoder.input_size" in expected:
        got = int(sd["image_encoder.input_size"].reshape(-1)[0])
        if got != config.img_size:
            mismatched.append(
                f"image_encoder.input_size: checkpoint {got} vs model {config.img_size}"
            )
    if not (missing or unexpected or mismatched):
        return ""
    try:
        found = architecture_name(config_from_state_dict(sd))
    except ValueError:  # e.g. a checkpoint missing half its tensors
        found = None
    want = architecture_name(config)
    head = (
        f"checkpoint is not a recognisable SAM model (the config is {want})" if found is None
        else f"checkpoint is a {found} but the config is {want}" if found != want
        else f"checkpoint does not match the {want} architecture"
    )
    parts = [head]
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{label}: {', '.join(items[:5])}{more}")
    if found is None:  # what to do: no config of ours fits what the file holds
        parts.append("copy or download the file again (it holds too little of a SAM model "
                     "to load), or give another checkpoint")
    return "; ".join(parts)


def load_checkpoint(path: str | Path, config: SamConfig | None = None) -> Sam:
    """:func:`read_checkpoint` + :func:`sam_from_state_dict`; sets ``model_id`` from metadata
    (a metadata file of another checkpoint is not used, with a warning)."""
    sd, meta = read_checkpoint(path)
    if "ignored_sidecar" in meta:
        logger.warning("%s", stale_metadata_note(path, meta["ignored_sidecar"]))
    cfg = config if config is not None else meta.get("config")
    try:
        sam = sam_from_state_dict(sd, cfg)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if isinstance(meta.get("model_id"), str):
        sam.model_id = meta["model_id"]
    return sam
