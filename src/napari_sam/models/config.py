"""Architectures of SAM-family models: :class:`SamConfig`, the named :data:`CONFIGS`, and the
config read back from a state_dict's keys and tensor shapes (:func:`config_from_state_dict`),
so official SAM checkpoints, micro-sam finetuned ones and our own load without being told
what they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .image_encoder import ImageEncoderCNN
from .tiny_vit import ImageEncoderTinyViT, tiny_vit_hyperparameters

__all__ = [
    "SamConfig",
    "CONFIGS",
    "architecture_name",
    "config_from_state_dict",
]

_TINY_VIT_FIELDS = (
    "tiny_embed_dims", "tiny_depths", "tiny_num_heads", "tiny_window_sizes",
    "tiny_mbconv_ratio", "tiny_num_classes",
)  # fmt: skip
_TUPLE_FIELDS = (
    "encoder_global_attn_indexes", "cnn_widths", "cnn_depths",
    "tiny_embed_dims", "tiny_depths", "tiny_num_heads", "tiny_window_sizes",
)  # fmt: skip
ENCODERS = ("vit", "cnn", "tiny_vit")


@dataclasses.dataclass(frozen=True)
class SamConfig:
    """Architecture of a SAM-family model.

    Attributes
    ----------
    encoder : {"vit", "cnn", "tiny_vit"}
        ViT (official SAM), the small CNN of the demo model, or MobileSAM's TinyViT.
    img_size : int
        Model input side S.
    patch_size, encoder_embed_dim, encoder_depth, encoder_num_heads, encoder_mlp_ratio
        ViT hyperparameters.
    encoder_global_attn_indexes : tuple of int
        ViT blocks with global attention; the others use ``window_size`` windows.
    cnn_widths, cnn_depths, cnn_fpn_dim
        CNN stage widths / residual blocks at strides 4, 8, 16, 32, and FPN width.
    tiny_embed_dims, tiny_depths, tiny_num_heads, tiny_window_sizes : tuple of 4 int
        TinyViT stage widths, blocks, heads and window sides (stage 0 is convolutional);
        its MLP ratio is ``encoder_mlp_ratio``.
    tiny_mbconv_ratio, tiny_num_classes
        TinyViT's MBConv expansion and the outputs of its unused ImageNet classifier (kept
        so MobileSAM checkpoints load unchanged; 0: none).
    prompt_embed_dim, mask_in_chans
        Prompt encoder.
    decoder_depth, decoder_mlp_dim, decoder_num_heads, num_multimask_outputs,
    iou_head_depth, iou_head_hidden_dim
        Mask decoder.
    name : str or None
        Short name ("vit_b", "demo", ...), not part of the architecture.
    """

    encoder: str = "vit"
    img_size: int = 1024
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_mlp_ratio: float = 4.0
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    cnn_widths: tuple[int, ...] = (32, 64, 128, 192)
    cnn_depths: tuple[int, ...] = (1, 2, 2, 2)
    cnn_fpn_dim: int = 128
    tiny_embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    tiny_depths: tuple[int, ...] = (2, 2, 6, 2)
    tiny_num_heads: tuple[int, ...] = (2, 4, 5, 10)
    tiny_window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    tiny_mbconv_ratio: float = 4.0
    tiny_num_classes: int = 1000
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    name: str | None = None

    def __post_init__(self) -> None:
        for f in _TUPLE_FIELDS:
            object.__setattr__(self, f, tuple(int(v) for v in getattr(self, f)))
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder == "vit" and self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} not divisible by patch {self.patch_size}")
        if self.encoder == "tiny_vit" and self.img_size % ImageEncoderTinyViT.stride:
            raise ValueError(f"img_size {self.img_size} is not a multiple of 16 (TinyViT)")

    @property
    def embedding_size(self) -> int:
        """Side E of the image embedding."""
        if self.encoder == "cnn":
            return self.img_size // ImageEncoderCNN.stride
        if self.encoder == "tiny_vit":
            return self.img_size // ImageEncoderTinyViT.stride
        return self.img_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists; TinyViT fields only for TinyViT, so
        the other encoders' dicts and model ids are as before)."""
        d = dataclasses.asdict(self)
        for f in _TUPLE_FIELDS:
            d[f] = list(d[f])
        if self.encoder != "tiny_vit":
            for f in _TINY_VIT_FIELDS:
                d.pop(f)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SamConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SamConfig fields: {sorted(unknown)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> SamConfig:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def architecture(self) -> dict[str, Any]:
        """The fields that define the network (the ones that matter for its encoder)."""
        d = self.to_dict()
        d.pop("name")
        drop = ("cnn_widths", "cnn_depths", "cnn_fpn_dim")
        if self.encoder == "cnn":
            drop = (
                "patch_size", "encoder_embed_dim", "encoder_depth", "encoder_num_heads",
                "encoder_mlp_ratio", "encoder_global_attn_indexes", "window_size",
            )  # fmt: skip
        elif self.encoder == "tiny_vit":
            drop += (
                "patch_size", "encoder_embed_dim", "encoder_depth", "encoder_num_heads",
                "encoder_global_attn_indexes", "window_size",
            )  # fmt: skip
        for k in drop:
            d.pop(k)
        return d

    def default_model_id(self) -> str:
        """``name`` if set, else a short hash of the architecture."""
        if self.name:
            return self.name
        digest = hashlib.sha1(json.dumps(self.architecture(), sort_keys=True).encode()).hexdigest()
        return f"{self.encoder}-{digest[:10]}"


CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(
        encoder_embed_dim=768,
        encoder_depth=12,
        encoder_num_heads=12,
        encoder_global_attn_indexes=(2, 5, 8, 11),
        name="vit_b",
    ),
    "vit_l": SamConfig(
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
        name="vit_l",
    ),
    "vit_h": SamConfig(
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(7, 15, 23, 31),
        name="vit_h",
    ),
    "vit_t": SamConfig(encoder="tiny_vit", name="vit_t"),
    "cnn": SamConfig(encoder="cnn", img_size=256, name="cnn"),
}


def _count(sd: Mapping[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in sd if (m := rx.match(k))}
    return max(idx) + 1 if idx else 0


def architecture_name(config: SamConfig) -> str:
    """Name of an architecture: "vit_b", "vit_l", "vit_h" or "vit_t" when it is one of
    :data:`CONFIGS`, else a short description such as "ViT model (embed 384, depth 2, input 256)".
    """
    arch = config.architecture()
    for name, ref in CONFIGS.items():
        if ref.architecture() == arch and name != "cnn":
            return name
    if config.encoder == "cnn":
        return f"CNN model (widths {list(config.cnn_widths)}, input {config.img_size})"
    if config.encoder == "tiny_vit":
        return (f"TinyViT model (widths {list(config.tiny_embed_dims)}, depths "
                f"{list(config.tiny_depths)}, input {config.img_size})")
    return (
        f"ViT model (embed {config.encoder_embed_dim}, depth {config.encoder_depth}, "
        f"input {config.img_size})"
    )


def config_from_state_dict(sd: Mapping[str, Tensor], name: str | None = None) -> SamConfig:
    """Infer the architecture from a state_dict's keys and tensor shapes.

    Works on meta tensors too. Raises ValueError when the keys are not a SAM model's.
    """
    try:
        return _config_from_state_dict(sd, name)
    except (KeyError, IndexError) as e:
        raise ValueError(
            f"state_dict does not look like a Segment Anything model (missing {e})"
        ) from None


def _config_from_state_dict(sd: Mapping[str, Tensor], name: str | None) -> SamConfig:
    kw = _prompt_and_decoder_fields(sd)
    if "image_encoder.patch_embed.proj.weight" in sd:
        kw.update(_vit_encoder_fields(sd))
    elif "image_encoder.layers.0.blocks.0.conv1.c.weight" in sd:
        kw.update(encoder="tiny_vit", **tiny_vit_hyperparameters(sd, "image_encoder."))
    elif "image_encoder.input_size" in sd:
        kw.update(_cnn_encoder_fields(sd))
    else:
        raise ValueError("state_dict has no image encoder (neither ViT nor CNN keys)")
    config = SamConfig(**kw)
    if name is None:
        arch = architecture_name(config)
        name = arch if arch in CONFIGS else None
    return config.replace(name=name)


def _prompt_and_decoder_fields(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """The prompt encoder's and mask decoder's :class:`SamConfig` fields."""
    kw: dict[str, Any] = {}
    pe = "prompt_encoder."
    kw["prompt_embed_dim"] = int(sd[pe + "no_mask_embed.weight"].shape[1])
    kw["mask_in_chans"] = int(sd[pe + "mask_downscaling.3.weight"].shape[0])
    md = "mask_decoder."
    kw["num_multimask_outputs"] = int(sd[md + "mask_tokens.weight"].shape[0]) - 1
    kw["iou_head_depth"] = _count(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.")
    kw["iou_head_hidden_dim"] = int(sd[md + "iou_prediction_head.layers.0.weight"].shape[0])
    kw["decoder_depth"] = _count(sd, r"mask_decoder\.transformer\.layers\.(\d+)\.")
    if kw["decoder_depth"]:
        kw["decoder_mlp_dim"] = int(sd[md + "transformer.layers.0.mlp.lin1.weight"].shape[0])
    return kw


def _vit_encoder_fields(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """The ViT image encoder's fields; blocks whose rel-pos table spans the whole grid are
    the global-attention ones, the others give the window size."""
    w = sd["image_encoder.patch_embed.proj.weight"]
    embed_dim, patch = int(w.shape[0]), int(w.shape[-1])
    grid = int(sd["image_encoder.pos_embed"].shape[1])
    depth = _count(sd, r"image_encoder\.blocks\.(\d+)\.")
    lengths = [int(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) for i in range(depth)]
    head_dim = int(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
    global_len = 2 * grid - 1
    glob = tuple(i for i, n in enumerate(lengths) if n == global_len)
    local = {n for n in lengths if n != global_len}
    if len(local) > 1:
        raise ValueError(f"blocks have several window sizes: {sorted(local)}")
    window = (local.pop() + 1) // 2 if local else 14
    mlp_dim = int(sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
    return dict(
        encoder="vit",
        img_size=grid * patch,
        patch_size=patch,
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=embed_dim // head_dim,
        encoder_mlp_ratio=mlp_dim / embed_dim,
        encoder_global_attn_indexes=glob,
        window_size=window,
    )


def _cnn_encoder_fields(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """The demo CNN encoder's fields (its input size is the buffer ``input_size``)."""
    n_stages = _count(sd, r"image_encoder\.stages\.(\d+)\.")
    widths = [int(sd["image_encoder.stem.1.0.weight"].shape[0])]
    depths = [_count(sd, r"image_encoder\.stages\.0\.(\d+)\.conv1\.")]
    for s in range(1, n_stages):
        widths.append(int(sd[f"image_encoder.stages.{s}.0.0.weight"].shape[0]))
        depths.append(max(0, _count(sd, rf"image_encoder\.stages\.{s}\.(\d+)\.conv1\.") - 1))
    return dict(
        encoder="cnn",
        img_size=int(sd["image_encoder.input_size"].reshape(-1)[0]),
        cnn_widths=tuple(widths),
        cnn_depths=tuple(depths),
        cnn_fpn_dim=int(sd["image_encoder.lateral.0.weight"].shape[0]),
    )
