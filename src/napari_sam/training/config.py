"""Hyperparameters of a training run (:class:`TrainConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .losses import LossWeights

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Hyperparameters of :class:`Trainer` (all have working defaults for finetuning).

    Attributes
    ----------
    lr : float
        Peak AdamW learning rate (linear warmup, then cosine decay to ``lr * min_lr_ratio``).
    weight_decay : float
    warmup_steps : int
    min_lr_ratio : float
    batch_size : int
        Images per step.
    objects_per_image : int
        Objects sampled per image and step (all of them when fewer).
    n_corrections : int
        Correction-click iterations after the first prompt.
    p_box : float
        Probability that an object's first prompt is a box instead of a point.
    p_farthest : float
        Probability that a correction click is the point farthest inside the error region
        (else uniformly random in it).
    correction_fraction : float
        Share of each step's objects (0 < f <= 1, at least one per prompt kind) that go on
        to the correction iterations. Each iteration is a decoder pass with its backward,
        which is most of a step's cost: at 0.5 a demo-model step of the correction phase
        takes 1.20 s instead of 1.68 s on a 2-core CPU (batch 4, 2 iterations), and every
        object still learns from its first prompt.
    p_drop_mask : float
        Probability, per correction iteration, of decoding without the mask prompt (so the
        model also works when a caller passes only points).
    point_interior_bias : float
        Probability that a first click is drawn towards the object's middle.
    box_noise : float
        Box jitter, relative to the box side (SAM: 0.1).
    freeze_encoder : bool
        Train only the prompt encoder and mask decoder; image embeddings are computed once
        per (augmented) image and cached.
    augment : bool
        Random flips and 90-degree rotations.
    grad_clip : float
        Gradient-norm clipping (0 disables).
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast dtype; "auto" is bf16 on CUDA and fp32 on the CPU.
    loss_resolution : {"input", "low"}
        Compute the mask loss on logits upsampled to the model input size, as inference
        does ("input"), or on the low-resolution logits against area-downsampled targets
        ("low", 4x cheaper).
    loss : LossWeights
    propagation : bool
        For items whose ``meta["partner"]`` (a neighbouring slice of the same volume) is in
        the batch, also train the step ``segment_volume`` takes: each object's predicted mask
        prompts the partner slice (box + low-resolution logits), against the partner's mask
        of the same id, which is empty where the object ends.
    propagation_hops : int
        Propagation steps per pair (>= 1). Each further hop prompts the partner slice again
        with the previous hop's prediction (box + logits), against the same target. Inference
        chains steps over slices that look alike; where an object has ended, the next source
        is the model's own leftover blob on background, which one hop never shows it (it then
        tends to copy the blob forever). The second hop teaches it to let such blobs vanish.
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 10
    min_lr_ratio: float = 0.05
    batch_size: int = 2
    objects_per_image: int = 8
    n_corrections: int = 3
    correction_fraction: float = 1.0
    p_box: float = 0.5
    p_farthest: float = 0.5
    p_drop_mask: float = 0.1
    point_interior_bias: float = 0.5
    box_noise: float = 0.1
    freeze_encoder: bool = False
    augment: bool = True
    grad_clip: float = 1.0
    precision: str = "auto"
    loss_resolution: str = "input"
    loss: LossWeights = field(default_factory=LossWeights)
    propagation: bool = True
    propagation_hops: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``loss`` as a nested dict)."""
        return asdict(self)
