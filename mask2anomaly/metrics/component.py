"""Component-level anomaly metrics of Segment Me If You Can: sIoU, PPV and F1*.

Reproduces ``MetricSegment`` (``SegEval-AnomalyTrack`` / ``SegEval-ObstacleTrack``) of
road-anomaly-benchmark, per image:

1. predicted anomaly = ``score > threshold`` (strict, compared in float64 as numpy 2 compares the
   float16 score files with the threshold that code reads back; numpy 1.23 rounded the
   threshold to float16 first), zeroed on void pixels *before* labelling; ground truth = label 1;
2. 8-connected components of both; predicted components smaller than ``min_pred_size`` pixels
   are dropped (500 anomaly track, 50 obstacle track); ground-truth components smaller than
   ``min_gt_size`` pixels (100 / 10) become void, and so does the background if it is that small
   (that code treats label 0 of the component map like any component);
3. the region of interest is every non-void pixel; for each ground-truth component ``k`` with
   ``K̂`` the predicted components touching it, ``sIoU = |k ∩ K̂| / (|k ∪ K̂| - A(k))`` with
   ``A(k)`` the pixels of ``K̂`` on other ground-truth components; for each predicted component,
   ``PPV = |k̂ ∩ ground truth| / |k̂|`` (all sizes within the region of interest).

Over the dataset, for ``τ`` in ``linspace(0.25, 0.75, 11)``: TP = ground-truth components with
sIoU >= τ, FN = the others, FP = predicted components with PPV < τ, each summed over images;
F1* = mean over τ of 2TP / (2TP + FN + FP). The reported sIoU and PPV are means over all
components of the dataset. The threshold is the pooled best-F1 threshold of the pixel metrics
(computed by the caller) or any given value.

Algorithm (linear in pixels, whatever the number of components): ``scipy.ndimage.label`` twice,
then only the pixels of some component (ground truth or predicted) are gathered; component sizes
by ``bincount``, and all overlaps at once from the pairs (ground-truth id,
predicted id) of the pixels where both are set — a ``bincount`` over the paired ids when the
id grid is at most a few times the pixel count, else a sort of those pairs. Sums over "the
predicted components touching k" are ``bincount``s over the overlap pairs. The reference loops
over components with full-image masks (quadratic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mask2anomaly.errors import UserError
from mask2anomaly.metrics._common import ANOMALY, VOID, check_pair, warn_undefined

Track = Literal["anomaly", "obstacle"]
TRACK_SIZES: dict[str, tuple[int, int]] = {"anomaly": (500, 100), "obstacle": (50, 10)}
"""Per track: (minimum predicted component size, minimum ground-truth component size)."""
SIOU_THRESHOLDS = np.linspace(0.25, 0.75, 11)
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class ComponentResult:
    """Component metrics of a dataset, fractions in [0, 1].

    Attributes:
        siou: mean sIoU over ground-truth components.
        ppv: mean PPV over predicted components.
        f1_star: mean over τ of the pooled component F1.
        threshold: the score threshold used.
        num_gt: ground-truth components counted.
        num_pred: predicted components counted.
    """

    siou: float
    ppv: float
    f1_star: float
    threshold: float
    num_gt: int
    num_pred: int


@dataclass(frozen=True)
class ImageComponents:
    """Per-component values of one image.

    Attributes:
        siou: ``(G,)`` sIoU of each ground-truth component.
        ppv: ``(K,)`` PPV of each predicted component.
    """

    siou: np.ndarray
    ppv: np.ndarray


def _overlaps(gt: np.ndarray, pred: np.ndarray, num_pred: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (gt id, pred id) of positive ids that overlap, and their overlap in pixels."""
    both = (gt > 0) & (pred > 0)
    code = gt[both].astype(np.int64) * (num_pred + 1) + pred[both]
    grid = (int(gt.max(initial=0)) + 1) * (num_pred + 1)
    if grid <= 4 * gt.size + 4096:
        counts = np.bincount(code, minlength=grid)
        code = np.flatnonzero(counts)
        counts = counts[code]
    else:
        code, counts = np.unique(code, return_counts=True)
    return code // (num_pred + 1), code % (num_pred + 1), counts.astype(np.int64)


def above(scores: np.ndarray, threshold: float) -> np.ndarray:
    """``scores > threshold`` with the comparison exact in float64, computed in the score dtype: the
    threshold is rounded down to the largest score-dtype value not above it, which no score lies
    strictly between."""
    kind = scores.dtype.type
    cut = kind(threshold)
    if float(cut) > threshold:
        cut = np.nextafter(cut, kind(-np.inf))
    return scores > cut


def image_components(
    scores: np.ndarray, labels: np.ndarray, threshold: float, min_pred_size: int, min_gt_size: int
) -> ImageComponents:
    """sIoU and PPV of every component of one image (see the module docstring).

    Args:
        scores: ``(H, W)`` finite float scores.
        labels: ``(H, W)`` uint8 labels, 0 inlier, 1 anomaly, 255 void.
        threshold: predicted anomaly = ``scores > threshold``.
        min_pred_size: predicted components smaller than this are dropped.
        min_gt_size: ground-truth components smaller than this become void.
    """
    from scipy import ndimage  # imported on first use: a fifth of evaluate-maps' start-up time

    predicted = above(scores, threshold)
    predicted &= labels != VOID
    truth = labels == ANOMALY
    gt_ids, num_gt = ndimage.label(truth, structure=_EIGHT)
    pred_ids, num_pred = ndimage.label(predicted, structure=_EIGHT)
    foreground = np.flatnonzero(truth | predicted)
    gt, pred = gt_ids.ravel()[foreground], pred_ids.ravel()[foreground]
    keep = np.bincount(pred, minlength=num_pred + 1) >= min_pred_size
    keep[0] = False
    pred = pred * keep[pred]
    gt_full_size = np.bincount(gt, minlength=num_gt + 1)
    gt_full_size[0] = gt_ids.size - np.count_nonzero(gt)
    in_roi = (gt_full_size >= min_gt_size)[gt]
    if not in_roi.all():
        gt, pred = gt[in_roi], pred[in_roi]
    gt_size = np.bincount(gt, minlength=num_gt + 1)
    pred_size = np.bincount(pred, minlength=num_pred + 1)
    pair_gt, pair_pred, overlap = _overlaps(gt, pred, num_pred)
    on_gt = np.bincount(pair_pred, weights=overlap, minlength=num_pred + 1).astype(np.int64)
    intersection = np.bincount(pair_gt, weights=overlap, minlength=num_gt + 1).astype(np.int64)
    touching = np.bincount(pair_gt, weights=pred_size[pair_pred], minlength=num_gt + 1).astype(np.int64)
    adjustment = np.bincount(pair_gt, weights=on_gt[pair_pred] - overlap, minlength=num_gt + 1)
    adjustment = adjustment.astype(np.int64)
    gts = np.flatnonzero(gt_size[1:]) + 1
    preds = np.flatnonzero(pred_size[1:]) + 1
    union = touching[gts] + gt_size[gts] - intersection[gts] - adjustment[gts]
    return ImageComponents(siou=intersection[gts] / union, ppv=on_gt[preds] / pred_size[preds])


@dataclass
class ComponentMetrics:
    """Streaming SMIYC component metrics with ``reset / update / merge / compute``.

    Args:
        threshold: score threshold (predicted anomaly = score > threshold).
        track: ``"anomaly"`` (components >= 500 px predicted, >= 100 px ground truth) or
            ``"obstacle"`` (50 / 10).

    Example:
        >>> import numpy as np
        >>> labels = np.zeros((40, 40), np.uint8); labels[5:20, 5:20] = 1
        >>> scores = np.zeros((40, 40), np.float32); scores[5:20, 5:15] = 1
        >>> m = ComponentMetrics(threshold=0.5, track="obstacle")
        >>> m.update(scores, labels)
        >>> r = m.compute(); round(r.siou, 4), r.ppv
        (0.6667, 1.0)
    """

    threshold: float
    track: Track = "anomaly"
    _siou_sum: float = field(default=0.0, init=False, repr=False)
    _ppv_sum: float = field(default=0.0, init=False, repr=False)
    _num_gt: int = field(default=0, init=False, repr=False)
    _num_pred: int = field(default=0, init=False, repr=False)
    _tp: np.ndarray = field(default_factory=lambda: np.zeros(SIOU_THRESHOLDS.size, np.int64), init=False)
    _fn: np.ndarray = field(default_factory=lambda: np.zeros(SIOU_THRESHOLDS.size, np.int64), init=False)
    _fp: np.ndarray = field(default_factory=lambda: np.zeros(SIOU_THRESHOLDS.size, np.int64), init=False)

    def __post_init__(self) -> None:
        if self.track not in TRACK_SIZES:
            raise UserError(f"unknown track {self.track!r} (expected 'anomaly' or 'obstacle')")
        if not np.isfinite(self.threshold):
            raise UserError(f"the component threshold must be a finite number, got {self.threshold}")

    def reset(self) -> None:
        """Forget every image seen."""
        self._siou_sum, self._ppv_sum, self._num_gt, self._num_pred = 0.0, 0.0, 0, 0
        for name in ("_tp", "_fn", "_fp"):
            setattr(self, name, np.zeros(SIOU_THRESHOLDS.size, np.int64))

    def update(self, scores: Any, labels: Any, source: str | None = None) -> None:
        """Add one image: ``(H, W)`` float scores and ``(H, W)`` labels (0, 1, 255)."""
        s, lab = check_pair(scores, labels, source)
        shape = np.shape(labels)
        if len(shape) != 2:
            where = f"{source}: " if source else ""
            raise UserError(f"{where}component metrics need 2-D maps, got shape {shape}")
        min_pred, min_gt = TRACK_SIZES[self.track]
        image = image_components(s.reshape(shape), lab.reshape(shape), self.threshold, min_pred, min_gt)
        self._siou_sum += float(np.sum(image.siou))
        self._ppv_sum += float(np.sum(image.ppv))
        self._num_gt += image.siou.size
        self._num_pred += image.ppv.size
        passed = image.siou[None, :] >= SIOU_THRESHOLDS[:, None]
        self._tp += passed.sum(axis=1)
        self._fn += image.siou.size - passed.sum(axis=1)
        self._fp += (image.ppv[None, :] < SIOU_THRESHOLDS[:, None]).sum(axis=1)

    def merge(self, other: ComponentMetrics) -> None:
        """Add the images of ``other`` (same threshold and track)."""
        if (other.threshold, other.track) != (self.threshold, self.track):
            raise UserError("cannot merge component metric states with different thresholds or tracks")
        self._siou_sum += other._siou_sum
        self._ppv_sum += other._ppv_sum
        self._num_gt += other._num_gt
        self._num_pred += other._num_pred
        self._tp += other._tp
        self._fn += other._fn
        self._fp += other._fp

    def compute(self) -> ComponentResult:
        """Dataset sIoU, PPV and F1*; undefined values are NaN with a warning."""
        if self._num_gt:
            siou = self._siou_sum / self._num_gt
        else:
            siou = warn_undefined("sIoU", "no ground-truth anomaly component")
        if self._num_pred:
            ppv = self._ppv_sum / self._num_pred
        else:
            ppv = warn_undefined("PPV", "no predicted anomaly component at this threshold")
        denominator = 2 * self._tp + self._fn + self._fp
        if np.all(denominator > 0):
            f1_star = float(np.mean(2 * self._tp / denominator))
        else:
            f1_star = warn_undefined("F1*", "no component, predicted or ground truth")
        return ComponentResult(siou, ppv, f1_star, float(self.threshold), self._num_gt, self._num_pred)
