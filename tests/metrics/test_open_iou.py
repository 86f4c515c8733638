"""Open-IoU / mIoU against per-class loops, TPR calibration against the first point of sklearn's
ROC curve above 95% (DenseHybrid's ``evaluate_osr.py``), and the StreetHazards cross-calibration
against a hand-wired two-split computation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from mask2anomaly.errors import UserError
from mask2anomaly.metrics import OpenSetConfusion, PixelMetrics, calibrate_threshold, cross_calibrated_open_iou

K = 3


def make_split(seed, n=3):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        gt = rng.integers(0, K + 1, size=(6, 7))
        gt[rng.random((6, 7)) < 0.1] = 255
        closed = np.where(rng.random((6, 7)) < 0.7, np.minimum(gt, K - 1), rng.integers(0, K, (6, 7)))
        scores = (rng.random((6, 7)) + (gt == K) * 0.6).astype(np.float32)
        images.append((closed, scores, gt))
    return images


def loop_iou(pairs, classes):
    """IoU per class by counting pixels class by class."""
    ious = []
    for c in classes:
        tp = sum(int(np.sum((g == c) & (p == c))) for g, p in pairs)
        fp = sum(int(np.sum((g != c) & (p == c))) for g, p in pairs)
        fn = sum(int(np.sum((g == c) & (p != c))) for g, p in pairs)
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    return np.array(ious)


def brute_force(images, threshold):
    """(closed mIoU, Open-mIoU, Open-IoU per class) with unknown = score strictly above threshold."""
    open_pairs, closed_pairs = [], []
    for closed, scores, gt in images:
        valid = gt != 255
        opened = np.where(scores > threshold, K, closed)
        open_pairs.append((gt[valid], opened[valid]))
        known = valid & (gt < K)
        closed_pairs.append((gt[known], closed[known]))
    open_iou = loop_iou(open_pairs, range(K + 1))
    return np.nanmean(loop_iou(closed_pairs, range(K))), np.nanmean(open_iou[:K]), open_iou


def roc_threshold(labels, scores, tpr_target=0.95):
    """The threshold of the first point of sklearn's default ROC curve whose TPR > target."""
    _, tpr, thresholds = roc_curve(labels, scores)
    return thresholds[np.argmax(tpr > tpr_target)]


def test_confusion_metrics_equal_per_class_loops():
    images = make_split(0)
    metric = OpenSetConfusion(K, threshold=0.8)
    for image in images:
        metric.update(*image)
    result = metric.compute()
    miou, open_miou, open_iou = brute_force(images, np.float32(0.8))
    assert result.miou == pytest.approx(miou, abs=1e-12)
    assert result.open_miou == pytest.approx(open_miou, abs=1e-12)
    np.testing.assert_allclose(result.open_iou, open_iou, atol=1e-12)


def test_ties_at_the_threshold_stay_known():
    closed = np.array([[0, 1, 2, 0]])
    scores = np.array([[0.5, 0.50001, 0.2, 0.5]], np.float32)
    gt = np.array([[0, 3, 2, 3]])
    metric = OpenSetConfusion(K, threshold=0.5)
    metric.update(closed, scores, gt)
    # only the pixel scoring above 0.5 becomes unknown: IoU(unknown) = 1 / 2, class 0 = 1 / 2,
    # class 1 absent (NaN)
    np.testing.assert_allclose(metric.compute().open_iou, [0.5, np.nan, 1.0, 0.5])


@pytest.mark.parametrize("seed", range(6))
def test_calibration_is_the_first_roc_point_above_target(seed):
    rng = np.random.default_rng(seed)
    tied = rng.integers(0, 30, size=400).astype(np.float32)
    scores = tied if seed % 2 else rng.random(400).astype(np.float32)
    labels = (rng.random(400) < 0.3).astype(np.uint8)
    state = PixelMetrics()
    state.update(scores, labels)
    expected = roc_threshold(labels, scores)
    assert calibrate_threshold(state) == expected
    assert np.mean(scores[labels == 1] >= expected) > 0.95


def test_calibration_follows_the_dropped_collinear_points():
    """Anomaly pixels scored 1..20 with nothing between them: the ROC points of 2..19 lie on one
    line and sklearn drops them, so the first point above TPR 0.9 is the one at 1, not at 2. An
    inlier scored 1.5 keeps the point at 2."""
    scores = np.concatenate([np.arange(1, 21), [0.5, 0.5]]).astype(np.float32)
    labels = np.array([1] * 20 + [0, 0], np.uint8)
    state = PixelMetrics()
    state.update(scores, labels)
    assert calibrate_threshold(state, tpr=0.9) == roc_threshold(labels, scores, 0.9) == 1.0
    scores, labels = np.append(scores, np.float32(1.5)), np.append(labels, np.uint8(0))
    state = PixelMetrics()
    state.update(scores, labels)
    assert calibrate_threshold(state, tpr=0.9) == roc_threshold(labels, scores, 0.9) == 2.0


def test_cross_calibration_swaps_thresholds_and_pools_the_closed_set():
    t5, t6 = make_split(1, n=2), make_split(2, n=4)

    def threshold_of(images):
        state = PixelMetrics()
        for _, scores, gt in images:
            labels = (gt == K).astype(np.uint8)
            labels[gt == 255] = 255
            state.update(scores, labels)
        return calibrate_threshold(state)

    result = cross_calibrated_open_iou(("t5", lambda: iter(t5)), ("t6", lambda: iter(t6)), num_known=K)
    _, open5, _ = brute_force(t5, threshold_of(t6))
    _, open6, _ = brute_force(t6, threshold_of(t5))
    pooled_miou, _, _ = brute_force(t5 + t6, 0.0)
    assert result.splits["t5"].threshold == threshold_of(t6)
    assert result.splits["t5"].open_miou == pytest.approx(open5, abs=1e-12)
    assert result.open_miou == pytest.approx((2 * open5 + 4 * open6) / 6, abs=1e-12)
    assert result.miou == pytest.approx(pooled_miou, abs=1e-12)
    assert result.miou != pytest.approx((2 * result.splits["t5"].miou + 4 * result.splits["t6"].miou) / 6)


def test_merge_equals_sequential():
    images = make_split(3)
    whole, first, second = (OpenSetConfusion(K, 0.9) for _ in range(3))
    for i, image in enumerate(images):
        whole.update(*image)
        (first if i else second).update(*image)
    first.merge(second)
    np.testing.assert_array_equal(first.compute().open_iou, whole.compute().open_iou)


def test_bad_input():
    metric = OpenSetConfusion(K, 0.5)
    scores = np.zeros((2, 2), np.float32)
    with pytest.raises(UserError, match=r"outside 0\.\.3"):
        metric.update(np.zeros((2, 2), int), scores, np.full((2, 2), 7))
    with pytest.raises(UserError, match="closed-set prediction"):
        metric.update(np.full((2, 2), 3), scores, np.zeros((2, 2), int))
    with pytest.raises(UserError, match="differ in size"):
        metric.update(np.zeros((2, 3), int), scores, np.zeros((2, 2), int))
    state = PixelMetrics()
    state.update(scores, np.zeros((2, 2), np.uint8))
    with pytest.raises(UserError, match="without anomaly"):
        calibrate_threshold(state)
