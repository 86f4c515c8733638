"""Open-set semantic segmentation: the closed-set prediction plus an "unknown" class.

Reference:
    Paper 000 (Mask2Anomaly) Sec. 5, Eq. 14, and the evaluation of DenseHybrid (paper 001,
    ``evaluate_osr.py``), which Open-IoU comes from: the closed-set argmax over the K known classes,
    with the pixels whose anomaly score is strictly above the threshold set to the unknown class K.
    The threshold is given, or the one reaching a true positive rate above 95% on a calibration set
    (:func:`~mask2anomaly.metrics.calibrate_threshold`). :class:`~mask2anomaly.metrics.OpenSetConfusion`
    applies the same rule when it counts.
"""

from __future__ import annotations

import numpy as np


def open_set_labels(closed: np.ndarray, scores: np.ndarray, threshold: float, num_known: int) -> np.ndarray:
    """``(H, W)`` uint8 labels: ``closed`` (ids ``0..K-1``), and ``K`` where ``scores > threshold``
    (compared in the score dtype)."""
    unknown = scores > scores.dtype.type(threshold)
    return np.where(unknown, num_known, closed).astype(np.uint8)
