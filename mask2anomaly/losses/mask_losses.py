"""Binary mask losses on point samples: sigmoid cross-entropy and dice, per pair and pairwise.

Mask2Former's definitions (``mask2former/modeling/criterion.py``: ``sigmoid_ce_loss``, ``dice_loss``;
``mask2former/modeling/matcher.py``: ``batch_sigmoid_ce_loss``, ``batch_dice_loss``), paper 000 Eq. 1-2:
the cross-entropy is averaged over the points of a mask, the dice uses a smoothing of 1, and the
matched-pair losses are summed over masks and divided by the number of ground-truth masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.dim() != 2 or logits.shape != targets.shape:
        raise ValueError(
            "expected logits and targets of the same shape [N, P]; "
            f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float | torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, mean over points, summed over masks, divided by ``num_masks``.

    Args:
        logits: ``[N, P]`` predicted mask logits at ``P`` points of ``N`` masks.
        targets: ``[N, P]`` target values in ``[0, 1]`` at the same points.
        num_masks: normaliser, the number of ground-truth masks (all-reduced under DDP).

    Returns:
        Scalar loss.
    """
    _check_pair(logits, targets)
    per_point = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return per_point.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float | torch.Tensor) -> torch.Tensor:
    """Soft dice loss ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` with ``p = sigmoid(logits)``, summed over masks.

    Args:
        logits: ``[N, P]`` predicted mask logits.
        targets: ``[N, P]`` target values in ``[0, 1]``.
        num_masks: normaliser, the number of ground-truth masks.

    Returns:
        Scalar loss.
    """
    _check_pair(logits, targets)
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def pairwise_sigmoid_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy between every prediction and every target (the matcher's mask cost).

    Args:
        logits: ``[Q, P]`` predicted mask logits.
        targets: ``[T, P]`` target values in ``[0, 1]`` at the same points.

    Returns:
        ``[Q, T]``; entry ``(q, t)`` equals ``sigmoid_bce_loss(logits[q:q+1], targets[t:t+1], 1)``
        (``-log sigmoid(x) = softplus(-x)``, ``-log(1 - sigmoid(x)) = softplus(x)``).
    """
    num_points = logits.shape[1]
    positive = F.softplus(-logits)
    negative = F.softplus(logits)
    return (positive @ targets.T + negative @ (1 - targets).T) / num_points


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss between every prediction and every target (the matcher's dice cost).

    Args:
        logits: ``[Q, P]`` predicted mask logits.
        targets: ``[T, P]`` target values in ``[0, 1]``.

    Returns:
        ``[Q, T]``; entry ``(q, t)`` equals ``dice_loss(logits[q:q+1], targets[t:t+1], 1)``.
    """
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)
