"""What SAM 2 remembers of an object, and how a slice's features are conditioned on it.

For slice t, the memory attention sees (Meta's SAM 2.1 rules, propagating forwards; mirrored
when propagating backwards):

* the memories of all prompted slices (or the ``max_cond_frames`` nearest ones), with the
  temporal encoding of distance 0;
* the memories of the ``num_maskmem - 1`` previous tracked slices t-1, ..., t-6 (a missing
  one is skipped), each with its own temporal encoding;
* the object pointers of the prompted slices at or before t and of up to
  ``max_object_pointers - 1`` previous slices, each split into D / D_mem tokens with a
  sine encoding of its signed distance.

A slice that starts an object uses no memory: its features plus the learned
``no_mem_embed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["FrameOutput", "MemoryBank", "condition_on_memory", "select_prompted"]

@dataclass
class FrameOutput:
    """What one tracking step gives for B objects on one slice.

    Attributes
    ----------
    low_res_masks : Tensor
        (B, 1, 4E, 4E) mask logits.
    high_res_masks : Tensor or None
        (B, 1, S, S) mask logits (None once stored in a propagation's memory bank).
    pointer : Tensor
        (B, D) object pointer.
    object_logits : Tensor
        (B, 1): > 0 where the object is present.
    iou : Tensor
        (B, C) predicted IoU of the candidates (C = 3 or 1).
    memory, memory_position : Tensor or None
        (B, D_mem, E, E) the slice's memory and its position encoding (None when the
        memory encoder was not run).
    """

    low_res_masks: Tensor
    high_res_masks: Tensor
    pointer: Tensor
    object_logits: Tensor
    iou: Tensor
    memory: Tensor | None = None
    memory_position: Tensor | None = None


@dataclass
class MemoryBank:
    """The outputs an object's propagation remembers, by slice index: ``prompted`` slices
    (conditioning) and ``tracked`` ones (propagated without prompts)."""

    prompted: dict[int, FrameOutput] = field(default_factory=dict)
    tracked: dict[int, FrameOutput] = field(default_factory=dict)




def sine_1d(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """(N,) positions -> (N, dim): sin of the first dim/2 frequencies, then cos."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    angles = positions.unsqueeze(-1) / dim_t
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def select_prompted(frame: int, prompted: dict, limit: int) -> tuple[dict, dict]:
    """Split prompted slices into those attended to and the rest: all when ``limit`` is -1
    or not exceeded, else the nearest before, the nearest at or after, then the nearest
    others up to ``limit``."""
    if limit == -1 or len(prompted) <= limit:
        return dict(prompted), {}
    chosen = {}
    before = max((t for t in prompted if t < frame), default=None)
    after = min((t for t in prompted if t >= frame), default=None)
    for t in (before, after):
        if t is not None:
            chosen[t] = prompted[t]
    rest = sorted((t for t in prompted if t not in chosen), key=lambda t: abs(t - frame))
    chosen.update((t, prompted[t]) for t in rest[: limit - len(chosen)])
    return chosen, {t: v for t, v in prompted.items() if t not in chosen}


def _spatial_memories(model, frame: int, bank: MemoryBank, chosen: dict, others: dict,
                      reverse: bool) -> tuple[list[Tensor], list[Tensor]]:
    """Memory tokens (M, B, D_mem) and their encodings of the prompted slices and the
    previous tracked ones."""
    n = model.config.num_maskmem
    entries = [(0, out) for out in chosen.values()]
    for t_pos in range(1, n):
        distance = n - t_pos
        previous = frame + distance if reverse else frame - distance
        out = bank.tracked.get(previous, others.get(previous))
        entries.append((t_pos, out))
    memories, positions = [], []
    for t_pos, out in entries:
        if out is None or out.memory is None:  # not tracked, or forgotten (out of reach)
            continue
        memories.append(out.memory.flatten(2).permute(2, 0, 1))
        pos = out.memory_position.flatten(2).permute(2, 0, 1)
        positions.append(pos + model.maskmem_tpos_enc[n - t_pos - 1])
    return memories, positions


def _pointer_memories(model, frame: int, bank: MemoryBank, chosen: dict, others: dict,
                      num_frames: int | None, reverse: bool, batch: int):
    """Object-pointer tokens (K * D / D_mem, B, D_mem) and their encodings, or None."""
    limit = model.config.max_object_pointers
    limit = limit if num_frames is None else min(num_frames, limit)
    sign = -1 if reverse else 1
    past = {t: out for t, out in chosen.items() if (t >= frame if reverse else t <= frame)}
    entries = [((frame - t) * sign, out.pointer) for t, out in past.items()]
    for distance in range(1, limit):
        t = frame + distance if reverse else frame - distance
        if t < 0 or (num_frames is not None and t >= num_frames):
            break
        out = bank.tracked.get(t, others.get(t))
        if out is not None:
            entries.append((distance, out.pointer))
    if not entries:
        return None
    distances, pointers = zip(*entries)
    pointers = torch.stack(pointers, dim=0)  # (K, B, D)
    d = pointers.shape[-1]
    d_mem = model.obj_ptr_tpos_proj.out_features
    rel = torch.tensor(distances, device=pointers.device, dtype=torch.float32) / (limit - 1)
    pos = model.obj_ptr_tpos_proj(sine_1d(rel, d)).unsqueeze(1).expand(-1, batch, d_mem)
    split = d // d_mem
    pointers = pointers.reshape(-1, batch, split, d_mem).permute(0, 2, 1, 3).flatten(0, 1)
    return pointers, pos.repeat_interleave(split, dim=0)


def condition_on_memory(model, frame: int, image, bank: MemoryBank, *, starts: bool,
                        num_frames: int | None = None, reverse: bool = False) -> Tensor:
    """The (B, D, E, E) embedding of slice ``frame`` for the prompt heads: its features
    attended to the bank's memories, or plus ``no_mem_embed`` when the slice ``starts``
    the object. ``image`` holds ``features`` and ``position`` (B, D, E, E)."""
    features = image.features
    if starts:
        return features + model.no_mem_embed.reshape(1, -1, 1, 1)
    b, d, h, w = features.shape
    chosen, others = select_prompted(frame, bank.prompted, model.config.max_cond_frames)
    memories, positions = _spatial_memories(model, frame, bank, chosen, others, reverse)
    pointers = _pointer_memories(model, frame, bank, chosen, others, num_frames, reverse, b)
    n_pointer_tokens = 0
    if pointers is not None:
        memories.append(pointers[0])
        positions.append(pointers[1])
        n_pointer_tokens = pointers[0].shape[0]
    memory = torch.cat(memories, dim=0).transpose(0, 1)
    memory_pos = torch.cat(positions, dim=0).transpose(0, 1)
    tokens = features.flatten(2).transpose(1, 2)
    tokens_pos = image.position.flatten(2).transpose(1, 2)
    out = model.memory_attention(tokens, tokens_pos, memory, memory_pos, n_pointer_tokens)
    return out.transpose(1, 2).reshape(b, d, h, w)
