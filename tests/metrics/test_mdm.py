"""MDM against a brute-force loop over Maskomaly's 1000 thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mask2anomaly.metrics import MaximalDetectionMargin, UndefinedMetricWarning
from mask2anomaly.metrics.mdm import margin_from_f1
from tests.metrics import naive


def make_images(rng, dtype):
    images = []
    for i in range(3):
        labels = (rng.random((4, 6)) < 0.4).astype(np.uint8)
        labels[0, 0] = 255
        scores = np.clip(rng.normal(0.35 + 0.4 * labels, 0.12), -0.1, 1.1).astype(dtype)
        scores[0, 1] = 0.0
        if i == 2:
            labels[labels == 1] = 0
        images.append((scores, labels))
    return images


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_pooled_and_image_mean_equal_brute_force(dtype):
    images = make_images(np.random.default_rng(0), dtype)
    metric = MaximalDetectionMargin()
    for scores, labels in images:
        metric.update(scores, labels)
    result = metric.compute()
    pooled = naive.longest_run_above(naive.mdm_f1_curve(images)) / 1000
    per_image = [
        naive.longest_run_above(naive.mdm_f1_curve([image])) / 1000 for image in images if np.any(image[1] == 1)
    ]
    assert result.pooled == pooled
    assert result.image_mean == pytest.approx(np.mean(per_image), abs=1e-15)
    assert result.num_images_with_anomaly == len(per_image) == 2
    assert 0 < pooled < 1


def test_threshold_zero_uses_strictly_positive_scores():
    scores = np.array([0.0, 0.0, 0.5], np.float32)
    labels = np.array([1, 1, 0])
    metric = MaximalDetectionMargin()
    metric.update(scores, labels)
    curve = naive.mdm_f1_curve([(scores, labels)])
    assert curve[0] == 0.0 and metric.compute().pooled == naive.longest_run_above(curve) / 1000


def test_margin_from_f1_longest_run():
    f1 = np.array([0.8, 0.9, 0.1, 0.71, 0.72, 0.73, 0.7, 0.9])
    assert margin_from_f1(f1) == naive.longest_run_above(f1) / f1.size == 3 / 8


def test_merge_equals_sequential():
    images = make_images(np.random.default_rng(1), np.float32)
    whole, first, second = MaximalDetectionMargin(), MaximalDetectionMargin(), MaximalDetectionMargin()
    for i, (scores, labels) in enumerate(images):
        whole.update(scores, labels)
        (first if i else second).update(scores, labels)
    first.merge(second)
    assert first.compute() == whole.compute()


def test_no_anomaly_is_nan_with_warning():
    metric = MaximalDetectionMargin()
    metric.update(np.array([0.2, 0.9], np.float32), np.array([0, 255]))
    with pytest.warns(UndefinedMetricWarning, match="MDM"):
        result = metric.compute()
    assert math.isnan(result.pooled) and math.isnan(result.image_mean)
