"""The SMIYC component threshold: the best-F1 threshold that road-anomaly-benchmark saves with its
pixel curve and reads back (``curves_from_cmats`` in ``metrics/pixel_classification_curves.py``,
``get_thresh_p_from_curve`` in ``metrics/instance_segmentation.py``), derived by hand below.

Facts of that code used in the derivations. With at most 384 pixels of a class in an image, its
quantile levels fall exactly on the sorted scores, so every distinct score of an image is a bin
edge and owns the bin starting at it; the image's lowest edge is ``vmin - eps`` (an empty bin).
The pooled rows are sorted by threshold, high to low, accumulated, and collapsed to the last row of
each threshold except the very first row; a start row (nothing predicted, threshold = highest + 1)
is prepended when the first row predicts something. F1 = 2TP / (2TP + FP + FN) per row and the
threshold is the one of the first row with the highest F1. The component metrics then predict
``score > threshold``.
"""

from __future__ import annotations

import numpy as np
import pytest

from mask2anomaly.io_utils import save_npy_atomic, save_png_atomic
from mask2anomaly.metrics import PixelMetrics
from mask2anomaly.metrics.score_files import evaluate

F16 = {v: float(np.float16(v)) for v in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)}
CELL = 8


def cells(values, labels):
    """A 8 x (8 n) image of n cells of 64 pixels, cell i scored values[i] and labelled labels[i]."""
    scores = np.repeat(np.asarray(values, np.float16)[None, :], CELL, axis=0).repeat(CELL, axis=1)
    truth = np.repeat(np.asarray(labels, np.uint8)[None, :], CELL, axis=0).repeat(CELL, axis=1)
    return scores, truth


def write_pairs(root, images):
    pairs = []
    for i, (scores, labels) in enumerate(images):
        score_path, label_path = root / "s" / f"{i}.npy", root / "l" / f"{i}.png"
        save_npy_atomic(score_path, scores)
        save_png_atomic(label_path, labels)
        pairs.append((str(i), score_path, label_path))
    return pairs


def test_tied_scores(tmp_path):
    """Image 1 cells (score, label): (0.9 A) (0.9 A) (0.6 A) (0.6 I) (0.3 I) (0.3 I);
    image 2: (0.8 A) (0.6 I) (0.6 I) (0.3 I) (0.3 I) (0.3 A); A = anomaly, I = inlier; a cell is
    64 pixels, so each class of an image has at most 192 pixels and each cell's score is an edge.

    Rows per image (threshold: TP, FP in cells): image 1 0.9: 2, 0 / 0.6: 1, 1 / 0.3: 0, 2 /
    0.29: 0, 0; image 2 0.8: 1, 0 / 0.6: 0, 2 / 0.3: 1, 2 / 0.29: 0, 0 (both images have
    vmin = 0.3 and eps = 0.01, so their lowest edges tie). Pooled and sorted: 0.9 (2, 0), 0.8
    (3, 0), 0.6 twice (then 4, 3), 0.3 twice (5, 7), 0.29 twice (5, 7). Kept: the first row
    twice (index 0 is kept, and kept again as the last 0.9), 0.8, the last 0.6, the last 0.3, the
    last 0.29; a start row is prepended. P = 5, N = 7 cells. F1: start 0; 0.9: 4 / 7 = 0.571
    (twice); 0.8: 6 / 8 = 0.75; 0.6: 8 / 12 = 0.667; 0.3 and 0.29: 10 / 17 = 0.588. Best: 0.75
    at threshold 0.8 (float16 0.7998046875). The old rule indexed the uncollapsed threshold list
    (0.9, 0.8, 0.6, 0.6, 0.3, ...) with the curve's index 3 and gave 0.6.

    Components at 0.8 (obstacle track: predicted >= 50 px, ground truth >= 10 px): score > 0.8
    only in image 1's two 0.9 cells, one predicted component of 128 px inside image 1's ground
    truth component of 192 px: sIoU 128 / 192; image 2's two ground-truth cells are missed (sIoU
    0). Mean sIoU = (2/3) / 3 = 0.2222, PPV = 1. F1* over tau = 0.25, 0.30, ..., 0.75: TP = 1,
    FN = 2, FP = 0 while tau <= 2/3 (9 values, F1 = 2 / 4), TP = 0 after (2 values): 4.5 / 11.
    """
    images = [
        cells([F16[0.9], F16[0.9], F16[0.6], F16[0.6], F16[0.3], F16[0.3]], [1, 1, 1, 0, 0, 0]),
        cells([F16[0.8], F16[0.6], F16[0.6], F16[0.3], F16[0.3], F16[0.3]], [1, 0, 0, 0, 0, 1]),
    ]
    metric = PixelMetrics("smiyc")
    for scores, labels in images:
        metric.update(scores, labels)
    result = metric.compute()
    assert result.best_f1_threshold == F16[0.8] == 0.7998046875
    assert result.best_f1 == pytest.approx(0.75, abs=1e-15)
    out = evaluate(write_pairs(tmp_path, images), "smiyc", "obstacle", None)
    assert out["component"]["threshold"] == F16[0.8]
    assert out["component"]["siou"] == pytest.approx(2 / 9, abs=1e-12)
    assert out["component"]["ppv"] == 1.0
    assert out["component"]["f1_star"] == pytest.approx(4.5 / 11, abs=1e-12)


def test_continuous_scores():
    """One image, every pixel a distinct score: anomalies 0.95, 0.7, 0.4; inliers 0.8, 0.5, 0.3,
    0.2, 0.1 (float16). Rows high to low (TP, FP): 0.95 (1, 0), 0.8 (1, 1), 0.7 (2, 1), 0.5 (2, 2),
    0.4 (3, 2), 0.3 (3, 3), 0.2 (3, 4), 0.1 (3, 5), 0.09 (3, 5; the empty bin at vmin - eps). No
    repeats; the first row is kept twice; a start row is prepended. P = 3, N = 5. F1: 0.95: 2 / 4
    = 0.5; 0.8: 2 / 5 = 0.4; 0.7: 4 / 6 = 0.667; 0.5: 4 / 7 = 0.571; 0.4: 6 / 8 = 0.75; 0.3:
    6 / 9; lower ones smaller. Best 0.75 at 0.4 (float16 0.39990234375). The old rule took index 6
    of the collapsed curve (start row and the doubled first row shift it by two) in the uncollapsed
    list (0.95, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2, ...) and gave 0.2."""
    scores = np.array([[F16[0.95], F16[0.8], F16[0.7], F16[0.5], F16[0.4], F16[0.3], F16[0.2], F16[0.1]]], np.float16)
    labels = np.array([[1, 0, 1, 0, 1, 0, 0, 0]], np.uint8)
    metric = PixelMetrics("smiyc")
    metric.update(scores, labels)
    result = metric.compute()
    assert result.best_f1_threshold == F16[0.4] == 0.39990234375
    assert result.best_f1 == pytest.approx(0.75, abs=1e-15)
    assert result.auprc == pytest.approx((1 / 3) * 1 + (1 / 3) * (2 / 3) + (1 / 3) * (3 / 5), abs=1e-12)


def test_start_row_threshold_when_nothing_is_found():
    """All anomalies score below every inlier: F1 is highest (2/9) at the lowest row, which is the
    image's empty bottom bin at vmin - eps, here 0.1 - 0.01 in float16 (0.0899...); the start row
    (0.5 + 1) and the rows above score lower."""
    scores = np.array([[0.5, 0.4, 0.1]], np.float16)
    labels = np.array([[0, 0, 1]], np.uint8)
    metric = PixelMetrics("smiyc")
    metric.update(scores, labels)
    result = metric.compute()
    assert result.best_f1 == pytest.approx(0.5, abs=1e-15)
    assert result.best_f1_threshold == float(np.float16(0.1))
