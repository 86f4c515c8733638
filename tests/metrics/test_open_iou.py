"""Open-IoU / mIoU against per-class loops, TPR calibration against sklearn's ROC, and the
StreetHazards cross-calibration against a hand-wired two-split computation."""

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
    open_pairs, closed_pairs = [], []
    for closed, scores, gt in images:
        valid = gt != 255
        opened = np.where(scores >= threshold, K, closed)
        open_pairs.append((gt[valid], opened[valid]))
        known = valid & (gt < K)
        closed_pairs.append((gt[known], closed[known]))
    open_iou = loop_iou(open_pairs, range(K + 1))
    return np.nanmean(loop_iou(closed_pairs, range(K))), np.nanmean(open_iou[:K]), open_iou


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


def test_calibration_is_highest_threshold_with_tpr_above_target():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 30, size=400).astype(np.float32)
    labels = (rng.random(400) < 0.3).astype(np.uint8)
    state = PixelMetrics()
    state.update(scores, labels)
    _, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    expected = thresholds[np.argmax(tpr > 0.95)]
    assert calibrate_threshold(state) == expected
    assert np.mean(scores[labels == 1] >= expected) > 0.95


def test_cross_calibration_swaps_thresholds_and_weights_by_images():
    t5, t6 = make_split(1, n=2), make_split(2, n=4)

    def threshold_of(images):
        state = PixelMetrics()
        for _, scores, gt in images:
            labels = (gt == K).astype(np.uint8)
            labels[gt == 255] = 255
            state.update(scores, labels)
        return calibrate_threshold(state)

    result = cross_calibrated_open_iou(("t5", lambda: iter(t5)), ("t6", lambda: iter(t6)), num_known=K)
    miou5, open5, _ = brute_force(t5, threshold_of(t6))
    miou6, open6, _ = brute_force(t6, threshold_of(t5))
    assert result.splits["t5"].threshold == threshold_of(t6)
    assert result.splits["t5"].open_miou == pytest.approx(open5, abs=1e-12)
    assert result.open_miou == pytest.approx((2 * open5 + 4 * open6) / 6, abs=1e-12)
    assert result.miou == pytest.approx((2 * miou5 + 4 * miou6) / 6, abs=1e-12)


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
