"""Losses of SAM's training: focal + dice on masks, MSE between the IoU head and actual IoU.

Every function takes mask logits (N, C, H, W) and binary (or soft) targets (N, H, W) and works
in float32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LossWeights", "dice_loss", "focal_loss", "mask_iou", "sam_loss"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (SAM: focal 20, dice 1, IoU MSE 1).

    ``focal_alpha`` < 0 (default) disables the focal loss's class weighting: with the
    detection default 0.25, models trained from scratch collapsed to empty masks for
    hundreds of steps in our experiments.
    """

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    focal_alpha: float = -1.0
    #: weight of a class-balanced BCE (mean over object pixels and mean over background
    #: pixels, averaged): its gradient on missed object pixels does not vanish, which gets
    #: models trained from scratch out of the "empty mask" solution quickly
    balanced: float = 0.0
    focal_gamma: float = 2.0


def focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss averaged over pixels: (N, C, H, W), (N, 1|C, H, W) -> (N, C).

    ``alpha < 0`` disables class weighting.
    """
    x = logits.float()
    t = targets.float().expand_as(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    prob = torch.sigmoid(x)
    p_t = prob * t + (1 - prob) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: Tensor, targets: Tensor, eps: float = 1.0) -> Tensor:
    """Soft dice loss: (N, C, H, W), (N, 1|C, H, W) -> (N, C)."""
    p = torch.sigmoid(logits.float()).flatten(2)
    t = targets.float().expand_as(logits).flatten(2)
    inter = (p * t).sum(-1)
    return 1 - (2 * inter + eps) / (p.sum(-1) + t.sum(-1) + eps)


@torch.no_grad()
def mask_iou(logits: Tensor, targets: Tensor, threshold: float = 0.0) -> Tensor:
    """IoU of thresholded logits with binary targets: (N, C, H, W), (N, 1|C, H, W) -> (N, C).

    Two empty masks have IoU 1.
    """
    p = (logits > threshold).flatten(2)
    t = (targets > 0.5).expand_as(logits).flatten(2)
    inter = (p & t).sum(-1).float()
    union = (p | t).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def balanced_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Class-balanced BCE: (N, C, H, W), (N, 1|C, H, W) -> (N, C)."""
    x = logits.float()
    t = targets.float().expand_as(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none").flatten(2)
    t = t.flatten(2)
    pos = (ce * t).sum(-1) / t.sum(-1).clamp_min(1e-6)
    neg = (ce * (1 - t)).sum(-1) / (1 - t).sum(-1).clamp_min(1e-6)
    return 0.5 * (pos + neg)


def sam_loss(
    logits: Tensor,
    targets: Tensor,
    iou_pred: Tensor,
    weights: LossWeights = LossWeights(),
) -> tuple[Tensor, dict[str, Tensor]]:
    """SAM's loss for one decoder call.

    Parameters
    ----------
    logits : (N, C, H, W)
        Mask logits at the resolution of ``targets``.
    targets : (N, H, W)
        Ground-truth masks (0/1, or soft values from downsampling).
    iou_pred : (N, C)
        The IoU head's predictions.

    With C > 1 (multimask output for an ambiguous prompt) only the candidate with the lowest
    mask loss is penalised per object (SAM's minimum over candidates); the IoU head is
    trained on every candidate against its actual IoU.

    Returns
    -------
    loss : scalar tensor (mean over objects)
    parts : dict of detached tensors: "focal", "dice", "iou_mse" (scalars), "iou" (N,) the
        actual IoU of the chosen candidate, "best" (N,) its index.
    """
    t = targets[:, None]
    focal = focal_loss(logits, t, weights.focal_alpha, weights.focal_gamma)  # (N, C)
    dice = dice_loss(logits, t)
    mask_l = weights.focal * focal + weights.dice * dice
    if weights.balanced:
        mask_l = mask_l + weights.balanced * balanced_bce(logits, t)
    best = mask_l.argmin(1)  # (N,)
    rows = torch.arange(len(best), device=best.device)
    actual = mask_iou(logits.detach(), t)  # (N, C)
    iou_mse = F.mse_loss(iou_pred.float(), actual, reduction="none").mean(1)  # (N,)
    loss = (mask_l[rows, best] + weights.iou * iou_mse).mean()
    parts = {
        "focal": focal[rows, best].mean().detach(),
        "dice": dice[rows, best].mean().detach(),
        "iou_mse": iou_mse.mean().detach(),
        "iou": actual[rows, best],
        "best": best,
    }
    return loss, parts
