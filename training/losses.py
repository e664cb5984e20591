"""Losses: Dice + focal on masks (positives; focal alone on negatives), BCE on presence, IoU regression."""

from typing import Dict, Optional

import torch
import torch.nn.functional as F


def sigmoid_focal(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-item mean focal loss (Lin et al.), logits/target (B, H, W) -> (B,)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.flatten(1).mean(1)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-item soft Dice loss, (B, H, W) -> (B,)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return 1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)


def hard_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded prediction with the target, (B,) (1 when both are empty)."""
    pred = (logits > 0).flatten(1).float()
    t = target.flatten(1)
    inter = (pred * t).sum(1)
    union = pred.sum(1) + t.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def segmentation_loss(
    out, target: torch.Tensor, present: torch.Tensor, weights: Dict[str, float], n_pos: Optional[torch.Tensor] = None
) -> Dict[str, torch.Tensor]:
    """All loss terms for a batch; ``out`` is the model's DecoderOutput, target (B, S, S), present (B,).

    Returns the weighted ``total`` and each unweighted term (batch means; Dice and IoU over positives only).
    ``n_pos``: the number of positives to divide by (under DDP: the global count / world size, so that averaging
    the processes' gradients gives exactly the single-process loss).
    """
    logits = out.masks[:, 0]
    pos = present > 0.5
    n_pos = (pos.float().sum() if n_pos is None else n_pos).clamp(min=1)
    dice = (soft_dice(logits, target) * pos).sum() / n_pos
    focal = sigmoid_focal(logits, target).mean()
    presence = F.binary_cross_entropy_with_logits(out.presence[:, 0], present)
    iou_target = hard_iou(logits.detach(), target)
    iou = ((out.iou[:, 0] - iou_target) ** 2 * pos).sum() / n_pos
    total = (
        weights.get("dice", 1.0) * dice
        + weights.get("focal", 20.0) * focal
        + weights.get("presence", 1.0) * presence
        + weights.get("iou", 1.0) * iou
    )
    return {"total": total, "dice": dice, "focal": focal, "presence": presence, "iou": iou}
