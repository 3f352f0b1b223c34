"""SAM 2.1 checkpoints: the four official sizes, telling a SAM 2 state dict from a SAM 1
one, inferring the size from tensor shapes, and loading Meta's files unchanged.

Meta's ``sam2.1_hiera_{tiny,small,base_plus,large}.pt`` hold ``{"model": state_dict}``;
the sizes differ in the trunk only (channels of the first stage and blocks per stage), so
the patch embedding's channels and the number of blocks identify the size.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from .decoder import decoder_keys_from_meta
from .hiera import HieraConfig
from .model import Sam2Config, Sam2Model

__all__ = ["SAM21_ONLY", "SAM2_CONFIGS", "infer_sam2_config", "is_sam2_state_dict",
           "load_sam2", "mismatch_message", "sam2_state_dict"]

SAM2_CONFIGS: dict[str, Sam2Config] = {
    "sam2.1_hiera_tiny": Sam2Config(HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9))),
    "sam2.1_hiera_small": Sam2Config(HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13))),
    "sam2.1_hiera_base_plus": Sam2Config(HieraConfig(
        112, 2, (2, 3, 16, 3), (12, 16, 20), background_pos_size=(14, 14))),
    "sam2.1_hiera_large": Sam2Config(HieraConfig(
        144, 2, (2, 6, 36, 4), (23, 33, 43), window_spec=(8, 4, 16, 8))),
}

_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")
_PATCH = "image_encoder.trunk.patch_embed.proj.weight"


def is_sam2_state_dict(state_dict: dict) -> bool:
    """True for a SAM 2 state dict (a Hiera trunk and a memory encoder)."""
    return _PATCH in state_dict and any(k.startswith("memory_encoder.") for k in state_dict)


def infer_sam2_config(state_dict: dict) -> tuple[str, Sam2Config]:
    """The official size whose shapes the state dict has: (name, config).

    Raises
    ------
    ValueError
        Not a SAM 2 state dict, or a trunk of no official size.
    """
    if not is_sam2_state_dict(state_dict):
        raise ValueError("this is not a SAM 2 checkpoint (no Hiera trunk and memory "
                         "encoder); for SAM 1 models use napari_sam.load_model")
    channels = state_dict[_PATCH].shape[0]
    blocks = 1 + max(int(m[1]) for k in state_dict if (m := _BLOCK.match(k)))
    for name, config in SAM2_CONFIGS.items():
        if config.hiera.embed_dim == channels and sum(config.hiera.stages) == blocks:
            return name, config
    known = ", ".join(f"{n} ({c.hiera.embed_dim} channels, {sum(c.hiera.stages)} blocks)"
                      for n, c in SAM2_CONFIGS.items())
    raise ValueError(f"a SAM 2 trunk with {channels} channels and {blocks} blocks is not an "
                     f"official size; known: {known}")


def sam2_state_dict(source) -> dict:
    """The state dict of a checkpoint file (Meta's ``{"model": ...}`` or a bare one), read
    with ``weights_only=True`` (a file that holds code is refused, never run)."""
    try:
        obj = torch.load(Path(source), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - named below with what to do
        raise ValueError(f"{source} is not a readable PyTorch checkpoint of tensors ({type(err).__name__}); "
                         "download it again (Meta's sam2.1_hiera_*.pt files)") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ValueError(f"{source} holds a {type(obj).__name__}, not a state dict")
    return obj


def load_sam2(source, device: str | torch.device = "cpu",
              image_size: int | None = None) -> Sam2Model:
    """A :class:`Sam2Model` in eval mode from a checkpoint path or a state dict; the size
    is inferred from the tensors.

    ``image_size`` (a multiple of 32; default 1024, what Meta trained at) runs the same
    weights at another input size: smaller is faster and coarser (tests use 128 px). A
    checkpoint's JSON metadata file may set it (key ``"image_size"``, see
    :func:`napari_sam.load_model`).
    """
    state = source if isinstance(source, dict) else sam2_state_dict(source)
    name, config = infer_sam2_config(state)
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or \
                image_size < 64 or image_size % 32:
            raise ValueError(f"a SAM 2 image_size must be a multiple of 32 >= 64, got "
                             f"{image_size!r}")
        config = dataclasses.replace(config, image_size=image_size)
    model = Sam2Model(config)
    model.variant = name
    result = model.load_state_dict(decoder_keys_from_meta(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(mismatch_message(name, result.missing_keys, result.unexpected_keys))
    return model.to(device).eval()


#: tensors SAM 2.1 added to SAM 2.0 (Meta's ``sam2_hiera_*.pt`` files lack them)
SAM21_ONLY = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.")


def mismatch_message(name: str, missing: list[str], unexpected: list[str]) -> str:
    """What to tell a user whose checkpoint's tensors are not those of SAM 2.1 ``name``
    (e.g. "sam2.1_hiera_tiny"): a SAM 2.0 file (only the 2.1 tensors missing) is named as
    such with the download to use; other mismatches are counted, with a few names."""
    if missing and not unexpected and all(k.startswith(SAM21_ONLY) for k in missing):
        return (f"this is a SAM 2.0 checkpoint (like Meta's {name.replace('sam2.1_', 'sam2_')}"
                f".pt, without SAM 2.1's tensors); napari-sam runs SAM 2.1: `napari-sam models "
                f"download {name}` (the same size), then use that model")
    parts = [f"{len(keys)} {what} tensors (e.g. {', '.join(keys[:3])})"
             for keys, what in ((missing, "missing"), (unexpected, "unexpected")) if keys]
    return (f"the checkpoint's tensors do not match SAM 2.1 {name}: {'; '.join(parts)}; "
            f"use Meta's sam2.1_hiera_*.pt files (napari-sam models download {name})")
