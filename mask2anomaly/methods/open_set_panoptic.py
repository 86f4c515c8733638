"""Open-set panoptic segmentation: known things and stuff, plus instances of unknown objects.

References:
    Paper 000 (Mask2Anomaly) Sec. 6, Eq. 15 and Tables VI-VII (unknown-instance mining);
    Cheng et al., "Masked-attention Mask Transformer for Universal Image Segmentation" (Mask2Former),
    ``panoptic_inference`` in ``mask2former/maskformer_model.py`` (the known-class merge);
    Nayal et al., "RbA: Segmenting Unknown Regions Rejected by All", ICCV 2023, code
    ``NazirNayal8/RbA`` (the alternative mining).

**Known classes** (Mask2Former's merge, per image): keep the queries whose top class over the K + 1
outputs is not "no object" and has probability ``> object_threshold`` (0.8); each pixel goes to the
kept query of highest ``p_q sigmoid(M_q)``; a query's segment is its pixels there with
``sigmoid(M_q) >= 0.5``, dropped when empty or when it keeps less than ``overlap_threshold`` (0.8) of
its own ``sigmoid >= 0.5`` area; stuff segments of one class are merged into one segment.

**Unknown instances, paper mining** (``mining="paper"``). The paper describes the steps but released
no code, and its two hyper-parameters ("number of connected components": 2, 2, 3 for the 5/10/20%
COCO splits; "500 iterations of the connected component algorithm") are not defined further. Our
interpretation:

1. background map (Eq. 15) ``B = 1 - max over known queries q of (max_{c<K} p_q[c]) sigmoid(M_q)``,
   where the known queries are those whose top class is not "no object";
2. candidate pixels: ``B >= background_threshold`` (0.5) and not claimed by a known segment (the
   paper's assumption that unknown objects lie in the background);
3. connected components (4-connectivity) of the candidates by iterative label propagation, each
   pixel taking the largest label among itself and its four neighbours, for at most ``iterations``
   steps (500). This is the reading under which the iteration count changes the result, as Table VI
   shows: a region whose propagation has not converged stays split into several components;
4. only the ``num_components`` largest components (3) are examined;
5. for each, the query whose mask overlaps it most is its overlapping mask, if that overlap is
   ``>= min_overlap`` (0.5, the paper's "significant overlap");
6. with that query's class distribution p (softmax over K + 1), the "average" stuff entropy E_S and
   thing entropy E_T are compared; E_S > E_T (the mask is unsure among stuff, i.e. unlikely to be
   stuff) makes the component an unknown instance.

The text leaves two readings open, offered as options (``overlap`` and ``entropy``):

- ``overlap``, how a component C and a query mask m = sigmoid(M_q) overlap: ``"iou"`` (default,
  the paper's words "intersection over union is used"): IoU of C and m >= 0.5; ``"coverage"``: the
  fraction of C that m >= 0.5 covers (a mask larger than a small object still overlaps it
  "significantly"); ``"soft"``: the IoU of C and the soft mask, ``sum_C m / (|C| + sum_{not C} m)``;
- ``entropy``, the "average class entropy" of a group G (stuff or things) of p: ``"normalised"``
  (default): the entropy of p restricted to G and renormalised, divided by ``log |G|`` (so that
  groups of different sizes compare); ``"mean"``: the mean over c in G of ``-p_c log p_c`` (the
  entropy terms of the full distribution, averaged); ``"binary"``: the mean over c in G of the
  binary entropy of p_c (each class a yes/no decision).

**Unknown instances, RbA mining** (``mining="rba"``): anomaly score (of any method; RbA uses ``rba``)
``>= score_threshold``, 3x3 morphological opening then closing (outside the image counts as
background for dilation and foreground for erosion, as in OpenCV), restricted to pixels no known
segment claimed, 4-connected components of at least ``min_area`` (200) pixels, each an unknown
thing.

Output per image: a :class:`PanopticPrediction`, segment ids 1.. (0 = unlabeled) and COCO-panoptic
``segments_info`` dicts; unknown instances have ``category_id = unknown_category`` (EOPSN's -1 by
default) and ``isthing = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy import ndimage

from mask2anomaly.data.classes import THING_TRAIN_IDS
from mask2anomaly.errors import UserError
from mask2anomaly.methods.base import ScoreContext
from mask2anomaly.metrics.panoptic import UNKNOWN

OVERLAP_READINGS = ("iou", "coverage", "soft")
ENTROPY_READINGS = ("normalised", "mean", "binary")

_FOUR = ndimage.generate_binary_structure(2, 1)
_SQUARE = np.ones((3, 3), dtype=bool)


@dataclass
class PanopticPrediction:
    """Panoptic segmentation of one image.

    Attributes:
        ids: ``[H, W]`` int64 segment ids, 0 = unlabeled.
        segments: COCO-panoptic ``segments_info``: dicts with ``id``, ``category_id``, ``isthing``
            (0/1) and ``area`` (pixels).
    """

    ids: torch.Tensor
    segments: list[dict[str, int]] = field(default_factory=list)

    def add(self, mask: torch.Tensor, category_id: int, isthing: bool) -> int:
        """Give the pixels of ``mask`` ``[H, W]`` bool a new segment; returns its id."""
        segment_id = len(self.segments) + 1
        self.ids[mask] = segment_id
        self.segments.append(
            {"id": segment_id, "category_id": int(category_id), "isthing": int(isthing), "area": int(mask.sum())}
        )
        return segment_id


def panoptic_merge(
    class_probs: torch.Tensor,
    mask_probs: torch.Tensor,
    thing_ids: Iterable[int],
    object_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
) -> PanopticPrediction:
    """Mask2Former's panoptic merge of one image's queries into known-class segments.

    Args:
        class_probs: ``[Q, K + 1]`` class probabilities ("no object" last).
        mask_probs: ``[Q, H, W]`` mask probabilities.
        thing_ids: the thing class ids (stuff segments of one class are merged).
        object_threshold: a kept query's top probability must exceed this.
        overlap_threshold: a segment must keep at least this fraction of its mask's area.
    """
    num_classes = class_probs.shape[-1] - 1
    things = set(thing_ids)
    scores, classes = class_probs.max(-1)
    keep = (classes != num_classes) & (scores > object_threshold)
    result = PanopticPrediction(torch.zeros(mask_probs.shape[-2:], dtype=torch.int64, device=mask_probs.device))
    if not bool(keep.any()):
        return result
    scores, classes, masks = scores[keep], classes[keep], mask_probs[keep]
    owner = (scores[:, None, None] * masks).max(0).indices  # max(): much faster than argmax() on CPU
    stuff_segment: dict[int, int] = {}
    for k in range(classes.numel()):
        category = int(classes[k])
        binary = masks[k] >= 0.5
        segment = (owner == k) & binary
        original_area, area = int(binary.sum()), int(segment.sum())
        if area == 0 or original_area == 0 or area / original_area < overlap_threshold:
            continue
        isthing = category in things
        if not isthing and category in stuff_segment:
            sid = stuff_segment[category]
            result.ids[segment] = sid
            result.segments[sid - 1]["area"] += area
            continue
        sid = result.add(segment, category, isthing)
        if not isthing:
            stuff_segment[category] = sid
    return result


def propagate_components(mask: torch.Tensor, iterations: int | None = None) -> torch.Tensor:
    """4-connected components by iterative max-label propagation.

    Every foreground pixel starts with its own label and, at each step, takes the largest label among
    itself and its four foreground neighbours; pixels sharing a label after the last step form a
    component. The propagation stops early once nothing changes (then the components are exact).

    Args:
        mask: ``[H, W]`` bool foreground.
        iterations: most propagation steps; ``None`` gives the exact components directly
            (``scipy.ndimage.label``). With fewer steps than a component needs, it stays split.

    Returns:
        ``[H, W]`` int64 labels, 0 on background, components numbered 1..

    Example:
        >>> propagate_components(torch.tensor([[1, 1, 0, 1]], dtype=torch.bool)).tolist()
        [[1, 1, 0, 2]]
    """
    fg = mask.cpu().numpy()
    if iterations is None:
        labels, _ = ndimage.label(fg, structure=_FOUR)
        return torch.from_numpy(labels).to(device=mask.device, dtype=torch.int64)
    out = np.zeros(fg.shape, dtype=np.int64)
    rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
    if rows.size:
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        inside = fg[box]
        labels = np.arange(1, inside.size + 1, dtype=np.int32).reshape(inside.shape) * inside
        new = np.empty_like(labels)
        for _ in range(iterations):
            new[...] = labels
            np.maximum(new[1:], labels[:-1], out=new[1:])
            np.maximum(new[:-1], labels[1:], out=new[:-1])
            np.maximum(new[:, 1:], labels[:, :-1], out=new[:, 1:])
            np.maximum(new[:, :-1], labels[:, 1:], out=new[:, :-1])
            new *= inside
            if np.array_equal(new, labels):
                break
            labels, new = new, labels
        values, inverse = np.unique(labels, return_inverse=True)
        out[box] = inverse.reshape(labels.shape) + int(values[0] != 0)
    return torch.from_numpy(out).to(mask.device)


def group_entropy(probs: torch.Tensor, classes: Iterable[int], reading: str = "normalised") -> torch.Tensor:
    """The "average class entropy" of ``probs [..., C]`` over the group ``classes``.

    Args:
        probs: class probabilities.
        classes: the group's class indices.
        reading: ``"normalised"``, ``"mean"`` or ``"binary"`` (module docstring).

    Returns:
        ``[...]`` non-negative values in nats (``"normalised"``: divided by ``log |G|``, so in
        [0, 1]); 0 for an empty group, and for a one-class group under ``"normalised"``.
    """
    index = sorted(set(classes))
    if reading not in ENTROPY_READINGS:
        raise UserError(f"unknown entropy reading {reading!r}; valid: {', '.join(ENTROPY_READINGS)}")
    if not index or (reading == "normalised" and len(index) < 2):
        return probs.new_zeros(probs.shape[:-1])
    p = probs[..., index]
    if reading == "mean":
        return -torch.special.xlogy(p, p).mean(-1)
    if reading == "binary":
        return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)).mean(-1)
    p = p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    return -torch.special.xlogy(p, p).sum(-1) / math.log(len(index))


def mask_overlap(mask_probs: torch.Tensor, component: torch.Tensor, reading: str = "iou") -> torch.Tensor:
    """Overlap of every query mask with one component.

    Args:
        mask_probs: ``[Q, H, W]`` mask probabilities.
        component: ``[H, W]`` bool.
        reading: ``"iou"``, ``"coverage"`` or ``"soft"`` (module docstring).

    Returns:
        ``[Q]`` float64 overlaps in [0, 1].
    """
    if reading not in OVERLAP_READINGS:
        raise UserError(f"unknown overlap reading {reading!r}; valid: {', '.join(OVERLAP_READINGS)}")
    size = int(component.sum())
    if reading == "soft":
        inside = (mask_probs * component).sum((-2, -1)).double()
        outside = mask_probs.sum((-2, -1)).double() - inside
        return inside / (size + outside).clamp_min(1e-12)
    binary = mask_probs >= 0.5
    inter = (binary & component).sum((-2, -1)).double()
    if reading == "coverage":
        return inter / max(size, 1)
    union = (binary | component).sum((-2, -1))
    return inter / union.clamp_min(1)


def background_map(class_probs: torch.Tensor, mask_probs: torch.Tensor) -> torch.Tensor:
    """Eq. 15: ``1 - max over known queries of (max_{c<K} p_q[c]) sigmoid(M_q)``.

    Args:
        class_probs: ``[Q, K + 1]``; known queries are those whose top class is not "no object".
        mask_probs: ``[Q, H, W]``.

    Returns:
        ``[H, W]``; 1 where no known query exists.
    """
    num_classes = class_probs.shape[-1] - 1
    known = class_probs.argmax(-1) != num_classes
    weight = torch.where(known, class_probs[:, :num_classes].amax(-1), torch.zeros_like(class_probs[:, 0]))
    return 1 - (weight[:, None, None] * mask_probs).amax(0)


def mine_unknown_paper(
    class_probs: torch.Tensor,
    mask_probs: torch.Tensor,
    claimed: torch.Tensor,
    thing_ids: Iterable[int],
    num_components: int = 3,
    iterations: int | None = 500,
    background_threshold: float = 0.5,
    min_overlap: float = 0.5,
    overlap: str = "iou",
    entropy: str = "normalised",
) -> list[torch.Tensor]:
    """Unknown instances by the paper's mining (steps 1-6 of the module docstring), one image.

    Args:
        class_probs: ``[Q, K + 1]`` class probabilities.
        mask_probs: ``[Q, H, W]`` mask probabilities.
        claimed: ``[H, W]`` bool, pixels of known segments.
        thing_ids: thing class ids; the other known classes are stuff.
        num_components: how many of the largest components are examined.
        iterations: label-propagation steps (``None``: until convergence).
        background_threshold: ``B >= background_threshold`` marks candidate pixels.
        min_overlap: least overlap between a component and its best-overlapping mask.
        overlap: reading of "overlap" (module docstring).
        entropy: reading of "average class entropy" (module docstring).

    Returns:
        ``[H, W]`` bool masks of the unknown instances.
    """
    num_classes = class_probs.shape[-1] - 1
    things = set(thing_ids) & set(range(num_classes))
    stuff = set(range(num_classes)) - things
    candidates = (background_map(class_probs, mask_probs) >= background_threshold) & ~claimed
    labels = propagate_components(candidates, iterations)
    num = int(labels.max())
    if num == 0:
        return []
    areas = torch.bincount(labels.flatten(), minlength=num + 1)[1:]
    largest = torch.argsort(-areas, stable=True)[:num_components] + 1
    stuff_entropy = group_entropy(class_probs, stuff, entropy)
    thing_entropy = group_entropy(class_probs, things, entropy)
    found = []
    for label in largest.tolist():
        component = labels == label
        overlaps = mask_overlap(mask_probs, component, overlap)
        best = int(overlaps.argmax())
        if overlaps[best] >= min_overlap and stuff_entropy[best] > thing_entropy[best]:
            found.append(component)
    return found


def mine_unknown_rba(
    scores: torch.Tensor, claimed: torch.Tensor, score_threshold: float, min_area: int = 200
) -> list[torch.Tensor]:
    """Unknown instances by RbA's procedure, one image.

    Args:
        scores: ``[H, W]`` anomaly scores.
        claimed: ``[H, W]`` bool, pixels of known segments.
        score_threshold: ``scores >= score_threshold`` marks anomalous pixels.
        min_area: smallest component kept, in pixels.

    Returns:
        ``[H, W]`` bool masks of the unknown instances, in order of first pixel.
    """
    anomalous = (scores >= score_threshold).cpu().numpy()
    opened = ndimage.binary_dilation(ndimage.binary_erosion(anomalous, _SQUARE, border_value=1), _SQUARE)
    cleaned = ndimage.binary_erosion(ndimage.binary_dilation(opened, _SQUARE), _SQUARE, border_value=1)
    cleaned &= ~claimed.cpu().numpy()
    labels, num = ndimage.label(cleaned, structure=_FOUR)
    areas = np.bincount(labels.ravel(), minlength=num + 1)
    labels_t = torch.from_numpy(labels).to(scores.device)
    return [labels_t == k for k in range(1, num + 1) if areas[k] >= min_area]


@dataclass(frozen=True)
class OpenSetPanoptic:
    """Open-set panoptic inference: known segments by Mask2Former's merge plus mined unknown instances.

    Args:
        thing_ids: thing class ids (Cityscapes trainIds by default).
        unknown_category: ``category_id`` of unknown instances (EOPSN: -1).
        mining: ``"paper"``, ``"rba"`` or ``"none"``.
        object_threshold: Mask2Former's object mask threshold (0.8).
        overlap_threshold: Mask2Former's overlap threshold (0.8).
        num_components: paper mining, components examined (2, 2, 3 for the 5/10/20% splits).
        iterations: paper mining, label-propagation steps (500).
        background_threshold: paper mining, threshold on the background map.
        min_overlap: paper mining, least component/mask overlap.
        overlap: paper mining, reading of "overlap": ``iou`` (paper), ``coverage`` or ``soft``.
        entropy: paper mining, reading of "average entropy": ``normalised``, ``mean`` or ``binary``.
        score_threshold: RbA mining, anomaly-score threshold (required for ``"rba"``).
        min_area: RbA mining, smallest unknown instance in pixels (200).
    """

    thing_ids: tuple[int, ...] = tuple(sorted(THING_TRAIN_IDS))
    unknown_category: int = UNKNOWN
    mining: Literal["paper", "rba", "none"] = "paper"
    object_threshold: float = 0.8
    overlap_threshold: float = 0.8
    num_components: int = 3
    iterations: int | None = 500
    background_threshold: float = 0.5
    min_overlap: float = 0.5
    overlap: str = "iou"
    entropy: str = "normalised"
    score_threshold: float | None = None
    min_area: int = 200

    def __post_init__(self) -> None:
        if self.mining not in ("paper", "rba", "none"):
            raise UserError(f"unknown mining {self.mining!r}; valid: paper, rba, none")
        if self.mining == "rba" and self.score_threshold is None:
            raise UserError("RbA mining needs a score_threshold")
        if self.overlap not in OVERLAP_READINGS:
            raise UserError(f"unknown overlap reading {self.overlap!r}; valid: {', '.join(OVERLAP_READINGS)}")
        if self.entropy not in ENTROPY_READINGS:
            raise UserError(f"unknown entropy reading {self.entropy!r}; valid: {', '.join(ENTROPY_READINGS)}")
        if self.num_components < 1:
            raise UserError(f"the mining's number of components must be at least 1, got {self.num_components}")
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"the mining's iterations must be at least 1, got {self.iterations}")
        if not 0 <= self.min_overlap <= 1 or not 0 <= self.background_threshold <= 1:
            raise UserError("the mining's min_overlap and background_threshold must lie in [0, 1]")

    def __call__(self, ctx: ScoreContext, anomaly_scores: torch.Tensor | None = None) -> list[PanopticPrediction]:
        """Panoptic prediction of every image of the batch, at ``ctx.size``.

        Args:
            ctx: the batch's mask-transformer outputs.
            anomaly_scores: ``[B, H, W]`` scores of any method (RbA mining only; RbA uses ``rba``).
        """
        if self.mining == "rba" and anomaly_scores is None:
            raise UserError("RbA mining needs the anomaly scores of the batch")
        results = []
        for b in range(ctx.class_probs.shape[0]):
            probs, masks = ctx.class_probs[b], ctx.mask_probs[b]
            result = panoptic_merge(probs, masks, self.thing_ids, self.object_threshold, self.overlap_threshold)
            claimed = result.ids > 0
            if self.mining == "paper":
                found = mine_unknown_paper(
                    probs,
                    masks,
                    claimed,
                    self.thing_ids,
                    self.num_components,
                    self.iterations,
                    self.background_threshold,
                    self.min_overlap,
                    self.overlap,
                    self.entropy,
                )
            elif self.mining == "rba":
                assert self.score_threshold is not None
                assert anomaly_scores is not None
                found = mine_unknown_rba(anomaly_scores[b], claimed, self.score_threshold, self.min_area)
            else:
                found = []
            for instance in found:
                result.add(instance, self.unknown_category, isthing=True)
            results.append(result)
        return results
