"""Maximal Detection Margin (MDM), the threshold-robustness metric of Maskomaly.

Reproduces ``get_mdm_f1_metric`` of the Maskomaly code (jan-ackermann/Maskomaly, ``eval.py``):
for ``t = i / 1000``, ``i = 0 .. 999``, the pixels predicted anomalous are those with
``score >= t`` (for ``t = 0``: ``score > 0``, because that code zeroes scores below ``t`` and then
takes the non-zero ones), compared in the score's own dtype as numpy compares an array with a
Python float; F1 = 2TP / (2TP + FP + FN) (0 when undefined, as ``sklearn.metrics.f1_score``);
MDM = (longest run of consecutive ``i`` with F1 > 0.7) / 1000. Void pixels never count.

Two aggregates: **pooled** (F1 of all valid pixels of the dataset at each ``t``, which is what that
code computes on a concatenated dataset) and **per-image mean** (MDM of each image that has at
least one anomaly pixel, averaged; images without anomalies have no defined detection quality).

Algorithm: per image, one sort of the valid scores and of the anomaly scores; a binary search per
threshold gives TP and FP at all 1000 thresholds at once. The state is 2 x 1000 pooled counts plus a
running sum and count of per-image MDMs, so memory does not grow with the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mask2anomaly.metrics._common import ANOMALY, VOID, check_pair, warn_undefined

STEPS = 1000
F1_MARGIN = 0.7


@dataclass(frozen=True)
class MDMResult:
    """MDM values, fractions in [0, 1].

    Attributes:
        pooled: MDM of the F1 curve of all valid pixels pooled.
        image_mean: mean of per-image MDMs over images containing anomaly pixels.
        num_images_with_anomaly: how many images ``image_mean`` averages.
    """

    pooled: float
    image_mean: float
    num_images_with_anomaly: int


def mdm_thresholds(dtype: np.dtype) -> np.ndarray:
    """The 1000 thresholds ``i / 1000`` rounded to the score dtype, shape ``(1000,)``."""
    return (np.arange(STEPS) / STEPS).astype(dtype)


def detection_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """TP and FP at every MDM threshold for one image.

    Args:
        scores: ``(P,)`` finite float scores.
        labels: ``(P,)`` labels in {0, 1, 255}.

    Returns:
        ``(tp, fp, num_positive)`` with ``tp`` and ``fp`` of shape ``(1000,)``, int64.
    """
    valid = scores[labels != VOID]
    anomalous = scores[labels == ANOMALY]
    thresholds = mdm_thresholds(scores.dtype)
    counts = []
    for part in (valid, anomalous):
        part.sort()
        above = part.size - np.searchsorted(part, thresholds, side="left")
        above[0] = part.size - np.searchsorted(part, thresholds[0], side="right")
        counts.append(above.astype(np.int64))
    tp = counts[1]
    return tp, counts[0] - tp, anomalous.size


def f1_curve(tp: np.ndarray, fp: np.ndarray, num_positive: int) -> np.ndarray:
    """F1 per threshold, 0 where 2TP + FP + FN = 0 (``sklearn``'s ``zero_division`` default)."""
    denominator = tp + fp + num_positive
    return np.divide(2.0 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)


def margin_from_f1(f1: np.ndarray, margin: float = F1_MARGIN) -> float:
    """Longest run of consecutive thresholds with F1 > ``margin``, as a fraction of the steps."""
    above = np.concatenate(([False], f1 > margin, [False]))
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    longest = int(np.max(edges[1::2] - edges[0::2])) if edges.size else 0
    return longest / f1.size


@dataclass
class MaximalDetectionMargin:
    """Streaming MDM with ``reset / update / merge / compute``.

    Example:
        >>> import numpy as np
        >>> m = MaximalDetectionMargin()
        >>> m.update(np.array([0.9, 0.8, 0.1, 0.1, 0.1], np.float32), np.array([1, 1, 0, 0, 0]))
        >>> m.compute().pooled  # F1 = 1 for 0.1 < t <= 0.8, i.e. i = 101 .. 800
        0.7
    """

    _tp: np.ndarray = field(default_factory=lambda: np.zeros(STEPS, np.int64), init=False, repr=False)
    _fp: np.ndarray = field(default_factory=lambda: np.zeros(STEPS, np.int64), init=False, repr=False)
    _num_positive: int = field(default=0, init=False, repr=False)
    _image_sum: float = field(default=0.0, init=False, repr=False)
    _image_count: int = field(default=0, init=False, repr=False)

    def reset(self) -> None:
        """Forget every image seen."""
        self._tp = np.zeros(STEPS, np.int64)
        self._fp = np.zeros(STEPS, np.int64)
        self._num_positive, self._image_sum, self._image_count = 0, 0.0, 0

    def update(self, scores: Any, labels: Any, source: str | None = None) -> None:
        """Add one image: ``(H, W)`` float scores and ``(H, W)`` labels (0, 1, 255)."""
        s, lab = check_pair(scores, labels, source)
        tp, fp, num_positive = detection_counts(s, lab)
        self._tp += tp
        self._fp += fp
        self._num_positive += num_positive
        if num_positive:
            self._image_sum += margin_from_f1(f1_curve(tp, fp, num_positive))
            self._image_count += 1

    def merge(self, other: MaximalDetectionMargin) -> None:
        """Add the images of ``other``."""
        self._tp += other._tp
        self._fp += other._fp
        self._num_positive += other._num_positive
        self._image_sum += other._image_sum
        self._image_count += other._image_count

    def compute(self) -> MDMResult:
        """Pooled and per-image-mean MDM; NaN with a warning when no image has anomaly pixels."""
        if self._num_positive == 0:
            nan = warn_undefined("MDM", "no anomaly pixel in the data")
            return MDMResult(nan, nan, 0)
        pooled = margin_from_f1(f1_curve(self._tp, self._fp, self._num_positive))
        return MDMResult(pooled, self._image_sum / self._image_count, self._image_count)
