"""Open-set semantic segmentation: the closed-set prediction plus an "unknown" class.

Reference:
    Paper 000 (Mask2Anomaly) Sec. 5, Eq. 14; the protocol of DenseHybrid (paper 001): threshold the
    anomaly score at the value reaching a true positive rate of 95% on a calibration set.

The closed-set prediction is the argmax over the K known classes of the per-pixel class scores (the
semantic marginal for a mask transformer); pixels whose anomaly score is above the threshold become the
unknown class K. The threshold is given, or calibrated with :func:`calibrate_open_set_threshold`,
which reuses :func:`~mask2anomaly.metrics.calibrate_threshold` (highest threshold whose TPR on the
calibration set is strictly above 95%).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from mask2anomaly.errors import UserError
from mask2anomaly.methods.base import AnomalyMethod, ScoreContext
from mask2anomaly.metrics import PixelMetrics, calibrate_threshold


@dataclass(frozen=True)
class OpenSetSemanticOutput:
    """Open-set semantic prediction of a batch.

    Attributes:
        prediction: ``[B, H, W]`` int64 class ids in ``0..K``, K = unknown.
        closed: ``[B, H, W]`` int64 closed-set class ids in ``0..K-1``.
        scores: ``[B, H, W]`` anomaly scores.
    """

    prediction: torch.Tensor
    closed: torch.Tensor
    scores: torch.Tensor


def open_set_semantic(ctx: ScoreContext, method: AnomalyMethod, threshold: float) -> OpenSetSemanticOutput:
    """Closed-set argmax, overridden by the unknown class K where ``method``'s score is above ``threshold``.

    Args:
        ctx: the batch's outputs.
        method: the anomaly scoring method.
        threshold: anomaly-score threshold (e.g. from :func:`calibrate_open_set_threshold`).
    """
    scores = method(ctx)
    closed = ctx.class_argmax
    prediction = torch.where(scores > threshold, torch.full_like(closed, ctx.num_known), closed)
    return OpenSetSemanticOutput(prediction, closed, scores)


def calibrate_open_set_threshold(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], tpr: float = 0.95) -> float:
    """Threshold reaching a TPR strictly above ``tpr`` on a calibration set (exact pooled counts).

    Args:
        batches: pairs of anomaly scores ``[B, H, W]`` and labels ``[B, H, W]`` (0 inlier, 1 unknown,
            255 void).
        tpr: target true positive rate.
    """
    state = PixelMetrics()
    for scores, labels in batches:
        if scores.shape != labels.shape:
            raise UserError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ in shape")
        for s, lab in zip(scores, labels, strict=True):
            state.update(s.detach().cpu().numpy(), lab.cpu().numpy())
    return calibrate_threshold(state, tpr)
