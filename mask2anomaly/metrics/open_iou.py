"""Open-set semantic segmentation metrics: closed mIoU and Open-IoU from one confusion matrix.

Follows DenseHybrid's evaluation (``evaluate_osr.py`` and ``utils/iou.py`` of its repository),
the Open-IoU reference paper 000 cites. The open-set prediction is the closed-set argmax
overridden by the unknown class ``K`` wherever the anomaly score is strictly above the threshold
(``classes[conf_probs > threshold] = K`` there; paper 000's Eq. 14 thresholds the score without
saying which side the threshold itself falls on). The threshold is the one reaching a true
positive rate above 95% on a calibration set (:func:`calibrate_threshold`), or given. For
StreetHazards, DenseHybrid calibrates t5 on t6 and t6 on t5, reports the image-weighted mean of
the two Open-mIoUs and the closed-set mIoU of t5 and t6 pooled in one confusion matrix
(:func:`cross_calibrated_open_iou`). DenseHybrid also computes the calibration scores on maps
bilinearly downscaled by 2 (labels by nearest neighbour); we calibrate at full resolution.

State: one count array ``M[g, c, u]`` over ground truth ``g`` in ``0..K`` (``K`` = unknown),
closed-set prediction ``c`` in ``0..K-1`` and unknown flag ``u`` (score > threshold), filled with
one ``bincount`` per image; void (255) pixels never count. From it:

- closed mIoU: IoU_k = TP / (TP + FP + FN) of ``c`` against ``g`` on pixels whose ground truth is a
  known class, averaged over the K known classes;
- Open-IoU: the prediction ``K if u else c`` against ``g`` on all valid pixels, IoU per class
  ``0..K``; Open-mIoU = mean over the known classes. A class absent from both ground truth and
  predictions has an undefined IoU and is left out of the means (NaN with a warning if all are).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mask2anomaly.errors import UserError
from mask2anomaly.metrics._common import VOID, check_scores, to_numpy, warn_undefined
from mask2anomaly.metrics.pixel import PixelMetrics


@dataclass(frozen=True)
class OpenSetResult:
    """Open-set semantic metrics, fractions in [0, 1].

    Attributes:
        miou: closed-set mean IoU over the known classes (pixels of known ground truth).
        open_miou: mean Open-IoU over the known classes.
        open_iou: ``(K + 1,)`` Open-IoU per class, the unknown class last (NaN if absent).
        threshold: the anomaly-score threshold used.
        num_images: images counted.
    """

    miou: float
    open_miou: float
    open_iou: np.ndarray
    threshold: float
    num_images: int


def _iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class of a square confusion matrix (rows ground truth), NaN where undefined."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    return np.divide(tp, union, out=np.full(tp.shape, np.nan), where=union > 0)


def _mean_defined(values: np.ndarray, name: str) -> float:
    if np.all(np.isnan(values)):
        return warn_undefined(name, "no known class occurs in ground truth or predictions")
    return float(np.nanmean(values))


def calibrate_threshold(calibration: PixelMetrics, tpr: float = 0.95) -> float:
    """The threshold of the first point of the ROC curve whose TPR is strictly above ``tpr``, as
    DenseHybrid's ``OODCalibration.calculate_stats`` (``evaluate_osr.py``) reads it off
    scikit-learn's ``roc_curve`` with its default ``drop_intermediate=True``.

    Without the dropping this is the highest anomaly score v with TPR(score >= v) > ``tpr``. The
    curve drops a point collinear with its two neighbours; the point of such a v is collinear
    exactly when the next lower score is also an anomaly score with no inlier between them and
    both hold the same numbers of anomaly and of inlier pixels, and then the threshold moves down
    to the next point that stays (always an anomaly score: a point followed by an inlier-only
    score, or the curve's last point, is never dropped).

    Args:
        calibration: exact-protocol pixel state of the calibration set (0 known, 1 unknown).
        tpr: target true positive rate.
    """
    values, pos, neg_above, neg_equal = calibration.positive_grid()
    if values.size == 0:
        raise UserError("cannot calibrate a TPR threshold on data without anomaly pixels")
    reached = np.flatnonzero(np.cumsum(pos) / pos.sum() > tpr)
    if reached.size == 0:
        raise UserError(f"no threshold reaches a TPR above {tpr}")
    neg_at_least = neg_above + neg_equal
    contiguous = np.append(neg_above[1:] == neg_at_least[:-1], False)
    same_step = np.append((pos[1:] == pos[:-1]) & (neg_equal[1:] == neg_equal[:-1]), False)
    first_point = (np.arange(values.size) == 0) & (neg_above[0] == 0)
    dropped = contiguous & same_step & ~first_point
    index = int(reached[0])
    while dropped[index]:
        index += 1
    return float(values[index])


@dataclass
class OpenSetConfusion:
    """Streaming open-set confusion counts with ``reset / update / merge / compute``.

    Args:
        num_known: number of known classes K (the unknown class is K).
        threshold: anomaly scores strictly above it become the unknown class (compared in the
            score dtype, as DenseHybrid's torch comparison does).

    Example:
        >>> import numpy as np
        >>> m = OpenSetConfusion(num_known=2, threshold=0.5)
        >>> m.update(np.array([0, 1, 1]), np.array([0.1, 0.9, 0.2], np.float32), np.array([0, 2, 1]))
        >>> m.compute().open_miou
        1.0
    """

    num_known: int
    threshold: float
    _counts: np.ndarray = field(init=False, repr=False)
    _num_images: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_known < 1:
            raise UserError(f"num_known must be at least 1, got {self.num_known}")
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._counts = np.zeros((self.num_known + 1, self.num_known, 2), np.int64)
        self._num_images = 0

    def update(self, closed_pred: Any, scores: Any, gt: Any, source: str | None = None) -> None:
        """Add one image.

        Args:
            closed_pred: ``(H, W)`` closed-set class ids in ``0..K-1``.
            scores: ``(H, W)`` anomaly scores (higher = more anomalous).
            gt: ``(H, W)`` ground truth in ``0..K`` (``K`` = unknown) or 255 (void).
            source: image name for error messages.
        """
        where = f"{source}: " if source else ""
        pred = to_numpy(closed_pred).ravel()
        s = check_scores(scores, source).ravel()
        g = to_numpy(gt).ravel()
        if not (pred.size == s.size == g.size):
            raise UserError(f"{where}prediction, scores and ground truth differ in size")
        valid = g != VOID
        pred, s, g = pred[valid], s[valid], g[valid].astype(np.int64)
        k = self.num_known
        if g.size and (g.min() < 0 or g.max() > k):
            raise UserError(f"{where}ground truth holds ids outside 0..{k} and 255")
        if pred.size and (pred.min() < 0 or pred.max() >= k):
            raise UserError(f"{where}closed-set prediction holds ids outside 0..{k - 1}")
        if not np.isfinite(s).all():
            raise UserError(f"{where}scores contain NaN or infinite values on non-void pixels")
        flag = s > s.dtype.type(self.threshold)
        code = (g * k + pred.astype(np.int64)) * 2 + flag
        self._counts += np.bincount(code, minlength=self._counts.size).reshape(self._counts.shape)
        self._num_images += 1

    def merge(self, other: OpenSetConfusion) -> None:
        """Add the images of ``other`` (same classes and threshold)."""
        if (other.num_known, other.threshold) != (self.num_known, self.threshold):
            raise UserError("cannot merge open-set states with different classes or thresholds")
        self._counts += other._counts
        self._num_images += other._num_images

    def closed_confusion(self) -> np.ndarray:
        """``(K, K)`` closed-set confusion counts (rows: known ground truth, columns: argmax)."""
        return self._counts[: self.num_known].sum(axis=2)

    def compute(self) -> OpenSetResult:
        """mIoU, Open-mIoU and per-class Open-IoU of every image seen."""
        k = self.num_known
        closed = self.closed_confusion()
        open_cm = np.zeros((k + 1, k + 1), np.int64)
        open_cm[:, :k] = self._counts[:, :, 0]
        open_cm[:, k] = self._counts[:, :, 1].sum(axis=1)
        open_iou = _iou(open_cm)
        return OpenSetResult(
            miou=_mean_defined(_iou(closed), "mIoU"),
            open_miou=_mean_defined(open_iou[:k], "Open-mIoU"),
            open_iou=open_iou,
            threshold=float(self.threshold),
            num_images=self._num_images,
        )


Split = Callable[[], Iterable[tuple[Any, Any, Any]]]
"""A re-iterable split: calling it yields ``(closed_pred, scores, gt)`` per image."""


@dataclass(frozen=True)
class CrossCalibrationResult:
    """StreetHazards cross-calibration: each split thresholded with the other's TPR-95 threshold.

    Attributes:
        splits: per split name, its :class:`OpenSetResult`.
        miou: closed mIoU of the two splits pooled in one confusion matrix.
        open_miou: image-weighted mean Open-mIoU.
    """

    splits: dict[str, OpenSetResult]
    miou: float
    open_miou: float


def anomaly_labels(gt: np.ndarray, num_known: int) -> np.ndarray:
    """Open-set ground truth (``0..K`` with K = unknown, 255 void) as anomaly labels (0 / 1 / 255)."""
    labels = (gt == num_known).astype(np.uint8)
    labels[gt == VOID] = VOID
    return labels


def cross_calibrated_open_iou(
    first: tuple[str, Split], second: tuple[str, Split], num_known: int, tpr: float = 0.95
) -> CrossCalibrationResult:
    """Open-IoU of two splits, each with the threshold calibrated on the other (t5 <-> t6).

    Args:
        first: ``(name, split)``, e.g. ``("t5", lambda: iterate_t5())``.
        second: the other split.
        num_known: number of known classes K (ground-truth id K = anomaly, 255 = void).
        tpr: calibration TPR (strictly above).
    """
    thresholds = {}
    for name, split in (first, second):
        calibration = PixelMetrics()
        for _, scores, gt in split():
            calibration.update(scores, anomaly_labels(to_numpy(gt), num_known), source=name)
        thresholds[name] = calibrate_threshold(calibration, tpr)
    results, closed = {}, np.zeros((num_known, num_known), np.int64)
    for (name, split), (other, _) in ((first, second), (second, first)):
        confusion = OpenSetConfusion(num_known, thresholds[other])
        for closed_pred, scores, gt in split():
            confusion.update(closed_pred, scores, gt, source=name)
        results[name] = confusion.compute()
        closed += confusion.closed_confusion()
    weights = np.array([r.num_images for r in results.values()], np.float64)
    miou = _mean_defined(_iou(closed), "mIoU")
    open_miou = float(np.average([r.open_miou for r in results.values()], weights=weights))
    return CrossCalibrationResult(results, miou, open_miou)
