"""SMIYC component metrics against a brute-force SegEval (flood fill, per-component masks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mask2anomaly.errors import UserError
from mask2anomaly.metrics import ComponentMetrics, UndefinedMetricWarning
from mask2anomaly.metrics.component import SIOU_THRESHOLDS, TRACK_SIZES, image_components
from tests.metrics import naive


def blob_image(rng, shape=(24, 32), blobs=5, max_side=7):
    """Random rectangles of anomaly, overlapping rectangles of high score, noise and void."""
    labels = np.zeros(shape, np.uint8)
    scores = rng.random(shape).astype(np.float32) * 0.6
    for _ in range(blobs):
        y, x = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
        h, w = rng.integers(1, max_side, size=2)
        labels[y : y + h, x : x + w] = 1
        dy, dx = rng.integers(-2, 3, size=2)
        scores[max(y + dy, 0) : y + dy + h, max(x + dx, 0) : x + dx + w] = rng.uniform(0.4, 1.0)
    labels[rng.random(shape) < 0.03] = 255
    labels[:, :2] = 255
    return scores, labels


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 6), st.floats(0.3, 0.9))
def test_image_components_equal_brute_force(seed, min_pred, min_gt, threshold):
    scores, labels = blob_image(np.random.default_rng(seed))
    ours = image_components(scores, labels, threshold, min_pred, min_gt)
    sious, ppvs = naive.segeval_image(scores, labels, threshold, min_pred, min_gt)
    np.testing.assert_allclose(np.sort(ours.siou), np.sort(sious), rtol=0, atol=0)
    np.testing.assert_allclose(np.sort(ours.ppv), np.sort(ppvs), rtol=0, atol=0)


@pytest.mark.parametrize("track", ["anomaly", "obstacle"])
def test_dataset_metrics_equal_brute_force(track):
    rng = np.random.default_rng(7)
    images = []
    for _ in range(3):
        labels = np.zeros((60, 70), np.uint8)
        scores = (rng.random((60, 70)) * 0.5).astype(np.float32)
        for size in (25, 12, 4):
            y, x = rng.integers(0, 60 - size), rng.integers(0, 70 - size)
            labels[y : y + size, x : x + size] = 1
            scores[y + 2 : y + size + 3, x : x + size - 1] = 0.9
        labels[50:, :10] = 255
        images.append((scores, labels))
    metric = ComponentMetrics(threshold=0.6, track=track)
    for scores, labels in images:
        metric.update(scores, labels)
    ours = metric.compute()
    ref = naive.segeval(images, 0.6, *TRACK_SIZES[track])
    assert ours.siou == pytest.approx(ref["siou"], abs=1e-12)
    assert ours.ppv == pytest.approx(ref["ppv"], abs=1e-12)
    assert ours.f1_star == pytest.approx(ref["f1_star"], abs=1e-12)


def test_sum_over_touching_components_uses_the_adjustment():
    """Two GT blobs covered by one predicted blob: A(k) removes the other blob from the union."""
    labels = np.zeros((10, 30), np.uint8)
    labels[2:8, 2:8] = 1
    labels[2:8, 20:26] = 1
    scores = np.zeros((10, 30), np.float32)
    scores[2:8, 2:26] = 1.0
    result = image_components(scores, labels, 0.5, 1, 1)
    # |k| = 36, the predicted blob has 144 px of which 36 on the other GT blob: 36 / (144 - 36)
    np.testing.assert_array_equal(result.siou, [36 / 108, 36 / 108])
    np.testing.assert_array_equal(result.ppv, [72 / 144])


def test_tiny_background_becomes_void_like_the_reference():
    labels = np.ones((6, 6), np.uint8)
    labels[0, 0] = 0
    scores = np.ones((6, 6), np.float32)
    ours = image_components(scores, labels, 0.5, 1, 2)
    ref = naive.segeval_image(scores, labels, 0.5, 1, 2)
    assert list(ours.siou) == ref[0] and list(ours.ppv) == ref[1] == [1.0]


def test_threshold_is_strict_and_compared_in_float64():
    """As numpy 2 runs SMIYC's ``anomaly_p > thresh_p``: a float16 score equal to the threshold is
    not predicted, one above a threshold that float16 would round up to it is."""
    labels = np.zeros((4, 4), np.uint8)
    labels[1:3, 1:3] = 1
    scores = np.zeros((4, 4), np.float16)
    scores[1:3, 1:3] = np.float16(0.3)
    at_value = image_components(scores, labels, float(np.float16(0.3)), 1, 1)
    just_below = image_components(scores, labels, 0.29995, 1, 1)  # float16(0.29995) == float16(0.3)
    assert np.float16(0.29995) == np.float16(0.3)
    assert at_value.ppv.size == 0 and just_below.ppv.size == 1


def test_merge_equals_sequential():
    rng = np.random.default_rng(3)
    images = [blob_image(rng, (60, 80), max_side=16) for _ in range(4)]
    whole, first, second = (ComponentMetrics(0.5, "obstacle") for _ in range(3))
    for i, (scores, labels) in enumerate(images):
        whole.update(scores, labels)
        (first if i < 2 else second).update(scores, labels)
    first.merge(second)
    assert whole.compute().num_pred > 0
    assert first.compute() == whole.compute()


def test_f1_star_counts_against_hand_computation():
    """One GT blob half covered (sIoU 0.5), one false predicted blob (PPV 0)."""
    labels = np.zeros((20, 40), np.uint8)
    labels[0:10, 0:10] = 1
    scores = np.zeros((20, 40), np.float32)
    scores[0:10, 0:5] = 1
    scores[15:20, 30:40] = 1
    metric = ComponentMetrics(0.5, "obstacle")
    metric.update(scores, labels)
    result = metric.compute()
    tp = (SIOU_THRESHOLDS <= 0.5).astype(int)
    expected = np.mean(2 * tp / (2 * tp + (1 - tp) + 1))
    assert (result.siou, result.ppv, result.num_gt, result.num_pred) == (0.5, 0.5, 1, 2)
    assert result.f1_star == pytest.approx(expected)


def test_no_components_gives_nan_with_warning():
    metric = ComponentMetrics(0.5)
    metric.update(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8))
    with pytest.warns(UndefinedMetricWarning):
        result = metric.compute()
    assert math.isnan(result.siou) and math.isnan(result.ppv) and math.isnan(result.f1_star)


def test_bad_arguments():
    with pytest.raises(UserError, match="track"):
        ComponentMetrics(0.5, "road")
    with pytest.raises(UserError, match="finite"):
        ComponentMetrics(float("nan"))
    with pytest.raises(UserError, match="2-D"):
        ComponentMetrics(0.5).update(np.zeros(5, np.float32), np.zeros(5, np.uint8))
    with pytest.raises(UserError, match="unexpected label values 3"):
        ComponentMetrics(0.5).update(np.zeros((2, 2), np.float32), np.full((2, 2), 3, np.uint8))
