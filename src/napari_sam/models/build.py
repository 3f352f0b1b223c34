"""Model configurations, building, and loading state_dicts / checkpoint files.

The architecture of a checkpoint is read from its tensor shapes
(:func:`config_from_state_dict`), so official SAM checkpoints, micro-sam finetuned ones and
our own load without being told what they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .image_encoder import ImageEncoderCNN, ImageEncoderViT
from .mask_decoder import MaskDecoder, TwoWayTransformer
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .tiny_vit import ImageEncoderTinyViT, tiny_vit_hyperparameters

__all__ = [
    "SamConfig",
    "CONFIGS",
    "build_sam",
    "config_from_state_dict",
    "sam_from_state_dict",
    "read_checkpoint",
    "load_checkpoint",
    "architecture_name",
]

_TINY_VIT_FIELDS = (
    "tiny_embed_dims", "tiny_depths", "tiny_num_heads", "tiny_window_sizes",
    "tiny_mbconv_ratio", "tiny_num_classes",
)  # fmt: skip
_TUPLE_FIELDS = (
    "encoder_global_attn_indexes", "cnn_widths", "cnn_depths",
    "tiny_embed_dims", "tiny_depths", "tiny_num_heads", "tiny_window_sizes",
)  # fmt: skip
_ENCODERS = ("vit", "cnn", "tiny_vit")


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
        if self.encoder not in _ENCODERS:
            raise ValueError(f"encoder must be one of {_ENCODERS}, got {self.encoder!r}")
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
        """JSON-serialisable dict (tuples become lists; TinyViT fields only for TinyViT)."""
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


def build_sam(config: SamConfig | Mapping[str, Any] | str) -> Sam:
    """Build an (untrained) model of the given architecture, in eval mode.

    ``config`` may be a :class:`SamConfig`, its dict, or a key of :data:`CONFIGS`.
    """
    if isinstance(config, str):
        config = CONFIGS[config]
    elif not isinstance(config, SamConfig):
        config = SamConfig.from_dict(config)
    if config.encoder == "tiny_vit":
        encoder = ImageEncoderTinyViT.from_config(config)
    elif config.encoder == "vit":
        encoder = ImageEncoderViT(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.encoder_embed_dim,
            depth=config.encoder_depth,
            num_heads=config.encoder_num_heads,
            mlp_ratio=config.encoder_mlp_ratio,
            out_chans=config.prompt_embed_dim,
            window_size=config.window_size,
            global_attn_indexes=config.encoder_global_attn_indexes,
        )
    else:
        encoder = ImageEncoderCNN(
            img_size=config.img_size,
            widths=config.cnn_widths,
            depths=config.cnn_depths,
            fpn_dim=config.cnn_fpn_dim,
            out_chans=config.prompt_embed_dim,
        )
    e = config.embedding_size
    sam = Sam(
        image_encoder=encoder,
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


# ----------------------------------------------------------------------------- shapes -> config


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
    if "image_encoder.patch_embed.proj.weight" in sd:
        w = sd["image_encoder.patch_embed.proj.weight"]
        embed_dim, patch = int(w.shape[0]), int(w.shape[-1])
        grid = int(sd["image_encoder.pos_embed"].shape[1])
        depth = _count(sd, r"image_encoder\.blocks\.(\d+)\.")
        lengths = [
            int(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) for i in range(depth)
        ]
        head_dim = int(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        global_len = 2 * grid - 1
        glob = tuple(i for i, n in enumerate(lengths) if n == global_len)
        local = {n for n in lengths if n != global_len}
        if len(local) > 1:
            raise ValueError(f"blocks have several window sizes: {sorted(local)}")
        window = (local.pop() + 1) // 2 if local else 14
        mlp_dim = int(sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
        kw.update(
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
    elif "image_encoder.layers.0.blocks.0.conv1.c.weight" in sd:
        kw.update(encoder="tiny_vit", **tiny_vit_hyperparameters(sd, "image_encoder."))
    elif "image_encoder.input_size" in sd:
        n_stages = _count(sd, r"image_encoder\.stages\.(\d+)\.")
        widths = [int(sd["image_encoder.stem.1.0.weight"].shape[0])]
        depths = [_count(sd, r"image_encoder\.stages\.0\.(\d+)\.conv1\.")]
        for s in range(1, n_stages):
            widths.append(int(sd[f"image_encoder.stages.{s}.0.0.weight"].shape[0]))
            depths.append(max(0, _count(sd, rf"image_encoder\.stages\.{s}\.(\d+)\.conv1\.") - 1))
        kw.update(
            encoder="cnn",
            img_size=int(sd["image_encoder.input_size"].reshape(-1)[0]),
            cnn_widths=tuple(widths),
            cnn_depths=tuple(depths),
            cnn_fpn_dim=int(sd["image_encoder.lateral.0.weight"].shape[0]),
        )
    else:
        raise ValueError("state_dict has no image encoder (neither ViT nor CNN keys)")
    config = SamConfig(**kw)
    if name is None:
        arch = architecture_name(config)
        name = arch if arch in CONFIGS else None
    return config.replace(name=name)


# ----------------------------------------------------------------------------- loading


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
    expected = sam.state_dict()
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
    if missing or unexpected or mismatched:
        try:
            found = architecture_name(config_from_state_dict(sd))
        except ValueError:
            found = "not a recognisable SAM model"
        want = architecture_name(config)
        head = (
            f"checkpoint is a {found} but the config is {want}"
            if found != want
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
        raise ValueError("; ".join(parts))
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(
            f"the weights contain NaN or inf in {len(bad)} tensors (e.g. {', '.join(bad[:3])}): "
            "the file is corrupt or the training that wrote it diverged; download it again or "
            "use an earlier checkpoint"
        )
    sam.load_state_dict(dict(sd), strict=True)
    return sam


_WRAPPER_KEYS = ("model_state", "model_state_dict", "state_dict", "model")
_PREFIXES = ("module.", "sam.", "model.", "_orig_mod.")


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())
    )


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    metadata: dict[str, Any] = {}
    for _ in range(4):
        if _is_state_dict(obj):
            break
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path} does not contain a state_dict (found {type(obj).__name__})")
        inner = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            # a state_dict with some non-tensor entries (e.g. our own "config" next to weights)
            tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
            if not tensors:
                raise ValueError(
                    f"{path} does not contain a model state_dict (keys: {list(obj)[:8]})"
                )
            for k, v in obj.items():
                if not isinstance(v, Tensor):
                    metadata.setdefault(k, v)
            obj = tensors
            break
        for k, v in obj.items():
            if k != inner and not k.startswith("optimizer") and not isinstance(v, Tensor):
                metadata.setdefault(k, v)
        obj = obj[inner]
    sd = dict(obj)
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p) :]: v for k, v in sd.items()}
                changed = True
    return sd, metadata


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint file into a plain SAM state_dict and metadata.

    Accepts official SAM checkpoints, micro-sam's ``{"model_state": ..., "optimizer": ...}``,
    ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers and the key prefixes ``module.``,
    ``sam.``, ``model.``. Loaded with ``weights_only=True`` onto the CPU.

    Metadata holds the wrapper's other small entries; ``metadata["config"]`` is a
    :class:`SamConfig` when the checkpoint or a JSON sidecar (``<path>.json`` or
    ``<stem>.json`` with a "config" entry) provides one; the sidecar's other entries are
    merged in too.

    Raises
    ------
    FileNotFoundError
        The file does not exist (the message names it).
    ValueError
        The file is not a PyTorch checkpoint, is truncated, or holds no state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (zip, pickle, EOF, RuntimeError, ...)
        # ``from None``, and never PyTorch's own text about weights_only: it advises
        # re-running torch.load with weights_only=False, which runs any code in the file.
        raise ValueError(_unreadable_message(path, e)) from None
    sd, metadata = _unwrap(obj, path)
    sidecar = find_sidecar(path)
    if sidecar is not None:
        try:
            side = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read metadata sidecar {sidecar}: {e}") from e
        if isinstance(side, Mapping):
            metadata.update(side)
            metadata["sidecar"] = str(sidecar)
    if "config" in metadata and isinstance(metadata["config"], Mapping):
        metadata["config"] = SamConfig.from_dict(metadata["config"])
    return sd, metadata


def _unreadable_message(path: Path, err: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, without PyTorch's advice to load
    with ``weights_only=False`` (that would execute whatever the file contains)."""
    text = str(err)
    found = re.search(r"GLOBAL\s+([\w.]+)", text)
    if found or "Unsupported class" in text:
        what = f" (it references {found.group(1)})" if found else ""
        return (
            f"{path} holds Python objects besides tensors{what}, so it is not loaded: "
            "napari-sam loads checkpoints with weights_only=True and never runs code from a "
            "file. If you made it, save only the weights, "
            "torch.save(model.state_dict(), path), and load that file."
        )
    inner = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n|$)", text)
    first = inner.group(1) if inner else (text.strip().splitlines() or [""])[0].split(". ")[0]
    if "weights_only" in first or "arbitrary code" in first or "trust" in first:
        first = ""
    return (
        f"{path} is not a readable PyTorch checkpoint (truncated download or another file "
        f"format?): {type(err).__name__}{': ' + first[:200] if first else ''}. Download it "
        "again or check that it is a .pt/.pth file written by torch.save."
    )


def find_sidecar(path: str | Path) -> Path | None:
    """The JSON sidecar of a checkpoint: ``<path>.json``, else ``<stem>.json``, else None."""
    path = Path(path)
    for sidecar in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if sidecar.is_file() and sidecar != path:
            return sidecar
    return None


def load_checkpoint(path: str | Path, config: SamConfig | None = None) -> Sam:
    """:func:`read_checkpoint` + :func:`sam_from_state_dict`; sets ``model_id`` from metadata."""
    sd, meta = read_checkpoint(path)
    cfg = config if config is not None else meta.get("config")
    try:
        sam = sam_from_state_dict(sd, cfg)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if isinstance(meta.get("model_id"), str):
        sam.model_id = meta["model_id"]
    return sam
