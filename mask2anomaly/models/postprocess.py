"""From query predictions to per-pixel maps: the semantic marginal every scorer builds on."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mask2anomaly.models.output import MaskTransformerOutput


def semantic_marginal(output: MaskTransformerOutput, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-pixel class scores ``softmax(C)[:, :K]^T sigmoid(M)`` (paper Eq. 3), "no object" dropped.

    Args:
        output: model output with ``class_logits [B, Q, K + 1]`` and ``mask_logits [B, Q, h, w]``.
        size: ``(H, W)`` to upsample the mask logits to (bilinear) before the product; ``None``
            keeps the stride-4 resolution.

    Returns:
        ``[B, K, H, W]`` scores; the closed-set prediction is their argmax over K and the
        Mask2Anomaly anomaly score is ``1 - max_K``.
    """
    masks = output.mask_logits
    if size is not None and tuple(masks.shape[-2:]) != tuple(size):
        masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    return marginal(output.class_logits.softmax(-1), masks.sigmoid())


def marginal(class_probs: torch.Tensor, mask_probs: torch.Tensor) -> torch.Tensor:
    """``sum_q class_probs[q, :K] * mask_probs[q]``: ``[B, Q, K + 1]`` and ``[B, Q, H, W]`` -> ``[B, K, H, W]``
    (the last class, "no object", dropped)."""
    return torch.einsum("bqk,bqhw->bkhw", class_probs[..., :-1], mask_probs)
