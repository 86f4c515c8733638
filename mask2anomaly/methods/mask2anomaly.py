"""Mask2Anomaly's anomaly score, refinement mask and flip test-time augmentation.

Reference:
    Rai, Cermelli, Caputo, Masone, "Mask2Anomaly: Mask Transformer for Universal Open-set
    Segmentation" (paper 000): Eq. 5 (score), Sec. 4.4 Eq. 13 (refinement mask); official code
    ``shyam671/Mask2Anomaly-Unmasking-Anomalies-in-Road-Scene-Segmentation``
    (``anomaly_utils/anomaly_inference.py``) for the refinement details and the flip averaging.

Score (Eq. 5): ``f = 1 - max_c sum_q softmax(C)[q, c] sigmoid(M)[q]`` over the K known classes, at
image resolution (mask logits upsampled bilinearly first). It can dip below 0 where masks overlap.

Refinement mask. The paper's words: zero the score in the segments of confident "stuff" masks other
than road, because anomalies are things and lie mostly on the road. Read literally, Eq. 13's
``R_M = C_bar . M_bar`` with ``C_bar = 1`` for things and road would instead zero every pixel that no
thing/road mask covers, unclaimed anomalies included; both the code and we implement the intent:

- the *refining queries* are those whose top class over the K + 1 outputs is not "no object", has
  probability ``> confidence`` (0.95) and belongs to the refinement classes;
- ``R = max over refining queries of p_q sigmoid(M_q)``; where ``R >= mask_threshold`` (0.5) the score
  becomes 0;
- nothing is refined unless more than one refining query exists (``min_queries = 2``, as the code).

The refinement classes are stuff minus the classes kept, from the label set's metadata. Two variants
(Cityscapes trainIds by default):

- ``refine`` (**code**, the default: it produced the published numbers): stuff except road and
  sidewalk, trainIds 2..10 (building .. sky);
- ``refine_paper`` (**paper**): stuff except road, trainIds 1..10.

Test-time augmentation (``tta``): the score (refined per view when refinement is on) of the image and
of its horizontal flip, the latter flipped back, averaged, as the official evaluation script does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from mask2anomaly.data.classes import CLASS_NAMES, STUFF_TRAIN_IDS
from mask2anomaly.errors import UserError
from mask2anomaly.methods.base import AnomalyMethod, ScoreContext

RefineVariant = Literal["none", "code", "paper"]

_KEPT_STUFF: dict[str, tuple[str, ...]] = {"code": ("road", "sidewalk"), "paper": ("road",)}


def refinement_classes(
    variant: Literal["code", "paper"],
    stuff_ids: Iterable[int] = STUFF_TRAIN_IDS,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> tuple[int, ...]:
    """Class ids whose confident masks the refinement removes: stuff minus the variant's kept classes.

    Args:
        variant: ``"code"`` keeps road and sidewalk, ``"paper"`` keeps road.
        stuff_ids: the stuff class ids of the label set (Cityscapes trainIds by default).
        class_names: names of the classes by id, to find the kept ones.

    Example:
        >>> refinement_classes("code")
        (2, 3, 4, 5, 6, 7, 8, 9, 10)
    """
    if variant not in _KEPT_STUFF:
        raise UserError(f"unknown refinement variant {variant!r}; valid: {', '.join(_KEPT_STUFF)}")
    kept = {class_names.index(name) for name in _KEPT_STUFF[variant] if name in class_names}
    return tuple(sorted(set(stuff_ids) - kept))


def refinement_mask(
    ctx: ScoreContext,
    classes: Iterable[int],
    confidence: float = 0.95,
    mask_threshold: float = 0.5,
    min_queries: int = 2,
) -> torch.Tensor:
    """Pixels the refinement zeroes: covered by a confident mask of a refinement class.

    Args:
        ctx: context of a mask transformer's output.
        classes: the refinement class ids.
        confidence: a refining query's top class probability must exceed this.
        mask_threshold: ``max_q p_q sigmoid(M_q) >= mask_threshold`` marks a pixel.
        min_queries: images with fewer refining queries are left untouched.

    Returns:
        ``[B, H, W]`` bool, True where the score is set to 0.
    """
    probs = ctx.class_probs
    classes = list(classes)
    known = probs.shape[-1] - 1
    if any(c < 0 or c >= known for c in classes):
        raise UserError(
            f"refinement classes {classes} do not fit a model with {known} classes; the default ones are "
            "Cityscapes trainIds 2..10 — pass refine_classes for another label set"
        )
    top_prob, top_class = probs.amax(-1), probs.argmax(-1)
    wanted = torch.zeros(probs.shape[-1], dtype=torch.bool, device=probs.device)
    wanted[classes] = True
    refining = wanted[top_class] & (top_prob > confidence)
    enough = refining.sum(1) >= min_queries
    weights = torch.where(refining & enough[:, None], top_prob, torch.zeros_like(top_prob))
    return (ctx.max_weighted_mask(weights) >= mask_threshold) & enough[:, None, None]


@dataclass(frozen=True)
class Mask2Anomaly(AnomalyMethod):
    """Mask2Anomaly's score ``1 - max_c marginal`` (Eq. 5), optionally refined and flip-averaged.

    Args:
        refine: ``"none"``, ``"code"`` (official code's classes) or ``"paper"`` (stuff except road).
        tta: average with the horizontally flipped image's score.
        refine_classes: explicit refinement class ids for another label set; ``None`` derives them
            from ``refine`` and the Cityscapes table.
        confidence: refining queries' top class probability must exceed this (0.95).
        mask_threshold: threshold on ``max_q p_q sigmoid(M_q)`` (0.5).
        min_queries: least number of refining queries for the refinement to apply (2).
    """

    key = "mask2anomaly"
    needs_masks = True
    reads_class_scores = False
    flags: ClassVar[dict[str, dict[str, Any]]] = {
        "refine": {"refine": "code"},
        "refine_paper": {"refine": "paper"},
        "tta": {"tta": True},
    }
    refine: RefineVariant = "none"
    tta: bool = False
    refine_classes: tuple[int, ...] | None = None
    confidence: float = 0.95
    mask_threshold: float = 0.5
    min_queries: int = 2

    def __post_init__(self) -> None:
        if self.refine not in ("none", "code", "paper"):
            raise UserError(f"refine must be 'none', 'code' or 'paper', got {self.refine!r}")

    @property
    def needs_flip(self) -> bool:
        return self.tta

    def _single(self, ctx: ScoreContext) -> torch.Tensor:
        score = 1 - ctx.class_max
        if self.refine == "none":
            return score
        classes = self.refine_classes if self.refine_classes is not None else refinement_classes(self.refine)
        refined = refinement_mask(ctx, classes, self.confidence, self.mask_threshold, self.min_queries)
        return score.masked_fill(refined, 0.0)

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        score = self._single(ctx)
        if not self.tta:
            return score
        assert ctx.flipped is not None
        return 0.5 * (score + self._single(ctx.flipped).flip(-1))
