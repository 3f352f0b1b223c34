"""Tiny SAM 2.1 checkpoints for the annotation-session and GUI tests: random weights saved
in Meta's format (``{"model": state_dict}`` with Meta's names), loaded the way a user's file
is (the size inferred from the tensors).

A real Hiera-T runs at 1024 px, seconds per slice on a CPU; the checkpoints here come with
a metadata file (``<name>.json``, key ``"image_size"``, read by :func:`napari_sam.load_model`)
that runs them at 128 px (the weights do not depend on the input size).
"""

from __future__ import annotations

import json
from pathlib import Path

#: object-score head of :func:`save_sam2_checkpoint`: "present" on every slice, or present
#: only on the prompted slice (tracked slices are then found absent: stop reason "absent")
OBJECT_HEADS = {"present": (1.0, 3.0), "absent": (100.0, -2.4)}


def save_sam2_checkpoint(path: Path, object_head: str = "present", seed: int = 0,
                         image_size: int = 128) -> Path:
    """A random Hiera-T SAM 2.1 (weights N(0, 0.05), seeded) saved at ``path`` in Meta's
    format, with a metadata file setting its input to ``image_size`` px. ``object_head``
    (:data:`OBJECT_HEADS`): scale of the object-score head's last weights and its bias."""
    import torch

    from napari_sam.models.sam2.checkpoint import SAM2_CONFIGS
    from napari_sam.models.sam2.model import Sam2Model

    model = Sam2Model(SAM2_CONFIGS["sam2.1_hiera_tiny"])
    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=gen) * 0.05 if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    scale, bias = OBJECT_HEADS[object_head]
    state["sam_mask_decoder.pred_obj_score_head.layers.2.weight"] *= scale
    state["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] = torch.tensor([bias])
    meta = {k.replace(".mlp.lin1.", ".mlp.layers.0.").replace(".mlp.lin2.", ".mlp.layers.1.")
            if k.startswith("sam_mask_decoder.transformer.") else k: v
            for k, v in state.items()}
    torch.save({"model": meta}, path)
    path.with_name(path.name + ".json").write_text(json.dumps({"image_size": image_size}))
    return path
