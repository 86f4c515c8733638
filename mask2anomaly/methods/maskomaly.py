"""Maskomaly: zero-shot anomaly scores from a mask transformer's queries.

Reference:
    Ackermann, Sakaridis, Yu, "Maskomaly: Zero-shot Mask Anomaly Segmentation" (paper 003,
    Algorithm 1); authors' code ``jan-ackermann/Maskomaly`` (``maskomaly/model.py`` for the score,
    ``maskomaly/anomaly_overlap.py`` for the choice of anomaly queries).

With ``m_q = sigmoid(M_q)`` at image resolution and ``p_q = softmax(C_q)`` over the K + 1 outputs:

- inlier queries I: top class not "no object" and top probability ``> t_mask`` (0.7);
- rejection map, starting at 1: ``o_reject = min over q in I ∪ R of (1 - m_q max_l p_q[l])``, where R
  are queries always rejected (``rejected_queries``, the code's [19, 24], which fix ground
  mislabelling for its checkpoint);
- borders: wherever two masks of the border set exceed ``t_border`` (0.1), ``o_reject`` is lowered to
  ``eps_border`` (0): ``b = min(1 - [m_k > t_b][m_n > t_b] + eps_b, 1)`` for every pair, computed
  here as "at least two masks above t_b";
- acceptance map: ``o_accept = max over anomaly queries A of m_q w_q``;
- score ``= lam o_reject + (1 - lam) o_accept`` (``lam`` = 0.6).

Two variants differ in the code and the poster:

- ``code`` (default, it produced the published numbers): ``w_q = max_l p_q[l]`` over all K + 1 outputs,
  and the border set is every query whose top class is not "no object", confident or not;
- ``poster`` (flag ``+poster``): ``w_q = p_q[no object]`` and the border set is I.

The anomaly queries A belong to one checkpoint: the defaults [49, 31, 83, 32] (and the always
rejected [19, 24]) to the authors' Swin-L Cityscapes Mask2Former (``maskomaly/model.py``, lines 78
and 106), and they are refused on any other model. :class:`QueryOverlap` (``mask2anomaly
select-queries``) finds them for another one; pass them as ``anomaly_queries`` (``evaluate`` /
``predict --maskomaly-queries``). Given queries come with no always-rejected query unless
``rejected_queries`` is given too. The poster's Algorithm 1 has no always-rejected query, so
``+poster`` never adds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from mask2anomaly.errors import UserError
from mask2anomaly.methods.base import AnomalyMethod, ScoreContext
from mask2anomaly.metrics._common import ANOMALY, VOID


@dataclass(frozen=True)
class Maskomaly(AnomalyMethod):
    """Maskomaly's reject/accept score (Algorithm 1 of paper 003).

    Args:
        variant: ``"code"`` or ``"poster"`` (see the module docstring).
        t_mask: inlier queries' top class probability must exceed this (0.7).
        t_border: mask probability above which two overlapping masks make a border (0.1).
        eps_border: value the border pixels' rejection map is lowered to (0).
        lam: weight of the rejection map (0.6).
        rejected_queries: queries always added to the rejection (checkpoint-specific; ``None``:
            the authors' [19, 24] with their anomaly queries in the code variant, else none).
        anomaly_queries: the queries that predict anomalies (checkpoint-specific; ``None``: the
            authors' [49, 31, 83, 32], accepted only on their model).
    """

    key = "maskomaly"
    needs_masks = True
    reads_class_scores = False
    flags: ClassVar[dict[str, dict[str, Any]]] = {"poster": {"variant": "poster"}}
    authors_queries: ClassVar[tuple[int, ...]] = (49, 31, 83, 32)
    authors_rejected: ClassVar[tuple[int, ...]] = (19, 24)
    variant: Literal["code", "poster"] = "code"
    t_mask: float = 0.7
    t_border: float = 0.1
    eps_border: float = 0.0
    lam: float = 0.6
    rejected_queries: tuple[int, ...] | None = None
    anomaly_queries: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.variant not in ("code", "poster"):
            raise UserError(f"maskomaly variant must be 'code' or 'poster', got {self.variant!r}")
        if not 0 <= self.lam <= 1:
            raise UserError(f"maskomaly lam must be in [0, 1], got {self.lam}")
        if self.anomaly_queries is not None and not self.anomaly_queries:
            raise UserError("maskomaly needs at least one anomaly query")

    @property
    def queries(self) -> tuple[int, ...]:
        """The anomaly queries A in use."""
        return self.authors_queries if self.anomaly_queries is None else self.anomaly_queries

    @property
    def always_rejected(self) -> tuple[int, ...]:
        """The queries R always added to the rejection."""
        if self.rejected_queries is not None:
            return self.rejected_queries
        return self.authors_rejected if self.anomaly_queries is None and self.variant == "code" else ()

    def check_model(self, config: Any) -> None:
        """The authors' query indices only on the authors' model: a Swin-L Mask2Former with 100
        queries and the 19 Cityscapes classes."""
        if self.anomaly_queries is not None:
            return
        swin = getattr(getattr(config, "backbone", None), "swin", None)
        authors = (
            swin is not None
            and swin.embed_dim == 192
            and tuple(swin.depths) == (2, 2, 18, 2)
            and getattr(config, "num_queries", None) == 100
            and getattr(config, "num_classes", None) == 19
        )
        if not authors:
            raise UserError(
                "maskomaly: its default anomaly queries 49,31,83,32 belong to the authors' Swin-L Cityscapes "
                "Mask2Former, not to this model; choose this model's with `mask2anomaly select-queries --model "
                "MODEL --dataset NAME:PATH --json queries.json` and pass --maskomaly-queries queries.json "
                "(or the indices, e.g. --maskomaly-queries 3,17,42)"
            )

    def _query_mask(self, queries: tuple[int, ...], num_queries: int, device: torch.device) -> torch.Tensor:
        if any(not 0 <= q < num_queries for q in queries):
            raise UserError(
                f"maskomaly query indices {list(queries)} do not fit a model with {num_queries} queries; "
                "choose them for this model with mask2anomaly select-queries"
            )
        out = torch.zeros(num_queries, dtype=torch.bool, device=device)
        out[list(queries)] = True
        return out

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        p = ctx.class_probs
        num_queries = p.shape[1]
        top_prob, top_class = p.amax(-1), p.argmax(-1)
        zero = torch.zeros_like(top_prob)
        known = top_class != p.shape[-1] - 1
        inliers = known & (top_prob > self.t_mask)
        rejected = inliers | self._query_mask(self.always_rejected, num_queries, p.device)
        reject = 1 - ctx.max_weighted_mask(torch.where(rejected, top_prob, zero))
        border_set = known if self.variant == "code" else inliers
        border = ctx.count_masks_above(border_set, self.t_border) >= 2
        reject = torch.where(border, torch.clamp(reject, max=self.eps_border), reject)
        anomaly = self._query_mask(self.queries, num_queries, p.device)
        accept_weight = top_prob if self.variant == "code" else p[..., -1]
        accept = ctx.max_weighted_mask(torch.where(anomaly, accept_weight, zero))
        return self.lam * reject + (1 - self.lam) * accept


@dataclass(frozen=True)
class QuerySelection:
    """The queries chosen as Maskomaly's anomaly queries.

    Attributes:
        queries: the chosen query indices, best first.
        mean_iou: ``[Q]`` mean IoU of every query's binarised mask with the anomalies.
        num_images: images that contained anomaly pixels (the ones averaged).
    """

    queries: tuple[int, ...]
    mean_iou: torch.Tensor
    num_images: int


@dataclass
class QueryOverlap:
    """How well each query's mask covers the anomalies of a validation set, image by image; the
    queries covering them best are Maskomaly's anomaly queries, chosen as its authors do.

    Criterion: per image with anomaly pixels and per query, the IoU between the query's mask
    binarised at ``sigmoid > mask_threshold`` (0.9) and the anomaly pixels, void pixels left out of
    both; averaged over those images; the ``top_k`` queries of highest mean IoU (ties: lower index
    first). The authors' script does the same with two quirks we drop: it subtracts the image's whole
    void count from the mask area, and it averages over images without anomalies too (IoU 0).

    Args:
        mask_threshold: mask binarisation threshold.
    """

    mask_threshold: float = 0.9
    total: torch.Tensor | None = None
    count: int = 0

    def update(self, ctx: ScoreContext, labels: torch.Tensor) -> None:
        """Add a batch: a mask-transformer context and its labels ``[B, H, W]`` at ``ctx.size``
        (0 inlier, 1 anomaly, 255 void)."""
        if tuple(labels.shape[-2:]) != ctx.size:
            raise UserError(f"labels of size {tuple(labels.shape[-2:])} do not match the scores' size {ctx.size}")
        labels = labels.to(ctx.mask_probs.device)
        valid = (labels != VOID)[:, None]
        anomaly = (labels == ANOMALY)[:, None]
        masks = (ctx.mask_probs > self.mask_threshold) & valid
        inter = (masks & anomaly).sum((-2, -1)).double()
        union = (masks | anomaly).sum((-2, -1)).double()
        has_anomaly = anomaly.flatten(1).any(1)
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))[has_anomaly]
        self.total = iou.sum(0).cpu() if self.total is None else self.total + iou.sum(0).cpu()
        self.count += int(has_anomaly.sum())

    def merge(self, other: QueryOverlap) -> None:
        """Add the images of ``other``."""
        if other.total is not None:
            self.total = other.total if self.total is None else self.total + other.total
        self.count += other.count

    def select(self, top_k: int = 4) -> QuerySelection:
        """The ``top_k`` queries of highest mean IoU (4 in the paper), with every query's mean IoU."""
        if self.total is None or self.count == 0:
            raise UserError("cannot select anomaly queries: no validation image contains anomaly pixels")
        mean_iou = self.total / self.count
        if not 0 < top_k <= mean_iou.numel():
            raise UserError(f"top_k must be in 1..{mean_iou.numel()}, got {top_k}")
        order = sorted(range(mean_iou.numel()), key=lambda q: (-float(mean_iou[q]), q))
        return QuerySelection(tuple(order[:top_k]), mean_iou, self.count)
