"""The official Mask2Anomaly evaluation (``anomaly_utils/anomaly_inference.py``) against the
libraries that script calls: scikit-learn's ``average_precision_score`` and ``auc(roc_curve)``,
and ``ood_metrics.fpr_at_95_tpr``, on the pixels of the images that have an anomaly."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from ood_metrics import fpr_at_95_tpr
from sklearn.metrics import auc, average_precision_score, roc_curve

from mask2anomaly.metrics import PixelMetrics, UndefinedMetricWarning


def official(images):
    """What the authors' script prints: images without label 1 skipped, the rest pooled."""
    kept = [(np.asarray(s, np.float32), lab) for s, lab in images if np.any(lab == 1)]
    scores = np.concatenate([s[(lab == 0) | (lab == 1)] for s, lab in kept])
    truth = np.concatenate([lab[(lab == 0) | (lab == 1)] for s, lab in kept]).astype(int)
    fpr, tpr, _ = roc_curve(truth, scores)
    return {
        "auprc": average_precision_score(truth, scores),
        "auroc": auc(fpr, tpr),
        "fpr95": fpr_at_95_tpr(scores, truth),
        "num_skipped": len(images) - len(kept),
    }


def ours(images, shards=1):
    states = [PixelMetrics("mask2anomaly") for _ in range(shards)]
    for i, (scores, labels) in enumerate(images):
        states[i % shards].update(scores, labels)
    for other in states[1:]:
        states[0].merge(pickle.loads(pickle.dumps(other)))
    return states[0].compute()


def dataset(seed, kind):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(rng.integers(2, 5)):
        size = int(rng.integers(20, 200))
        labels = rng.choice(np.array([0, 0, 0, 1, 255], np.uint8), size)
        if rng.random() < 0.3:
            labels[labels == 1] = 0
        if kind == "random":
            scores = rng.random(size)
        elif kind == "tied":
            scores = rng.integers(0, 6, size) / 5
        else:
            scores = rng.normal(0, 1, size) + 1.5 * (labels == 1)
        images.append((scores.astype(np.float32).reshape(1, -1), labels.reshape(1, -1)))
    labels = images[0][1]
    labels[0, :2] = (1, 0)
    return images


@pytest.mark.parametrize("kind", ["random", "tied", "separated"])
@pytest.mark.parametrize("seed", range(8))
def test_equals_the_official_script(seed, kind):
    images = dataset(seed, kind)
    ref = official(images)
    for shards in (1, 3):
        result = ours(images, shards)
        assert result.auprc == pytest.approx(ref["auprc"], abs=1e-12)
        assert result.auroc == pytest.approx(ref["auroc"], abs=1e-12)
        assert result.fpr95 == pytest.approx(ref["fpr95"], abs=1e-12)
        assert result.num_skipped == ref["num_skipped"]


def test_tpr_of_exactly_095_takes_the_last_point_of_that_level():
    """20 anomalies: 19 at 0.9 reach TPR 0.95 exactly; inliers at 0.85 and 0.8 lie on that level,
    then the last anomaly at 0.5. ``np.interp`` at 0.95 takes the level's last point (FPR 3/6)."""
    scores = np.array([0.9] * 19 + [0.5] + [0.95, 0.85, 0.8, 0.3, 0.2, 0.1], np.float32)
    labels = np.array([1] * 20 + [0] * 6, np.uint8)
    result = ours([(scores, labels)])
    assert result.fpr95 == pytest.approx(fpr_at_95_tpr(scores, labels), abs=1e-15)
    assert result.fpr95 == pytest.approx(3 / 6)


def test_interpolates_between_levels():
    """10 anomalies at 0.9 (TPR 0.5) and 10 at 0.4 (TPR 1); inliers 0.95 and 0.6 (FPR 0.25, 0.5 on
    the first level), 0.3, 0.2. At TPR 0.95 the curve runs from (0.5, 0.5) to (0.5, 1): FPR 0.5.
    With the inlier 0.6 moved to 0.4, tied with the second anomaly level, the curve runs from
    (0.25, 0.5) to (0.5, 1): 0.25 + 0.9 * 0.25."""
    labels = np.array([1] * 20 + [0] * 4, np.uint8)
    scores = np.array([0.9] * 10 + [0.4] * 10 + [0.95, 0.6, 0.3, 0.2], np.float32)
    assert ours([(scores, labels)]).fpr95 == pytest.approx(0.5, abs=1e-15) == fpr_at_95_tpr(scores, labels)
    scores[21] = 0.4
    expected = 0.25 + 0.9 * 0.25
    assert ours([(scores, labels)]).fpr95 == pytest.approx(expected, abs=1e-15)
    assert fpr_at_95_tpr(scores, labels) == pytest.approx(expected, abs=1e-15)


def test_images_without_anomaly_are_skipped_and_float64_is_rounded_to_float32():
    rng = np.random.default_rng(3)
    with_anomaly = (rng.random((5, 5)), (rng.random((5, 5)) < 0.3).astype(np.uint8))
    without = (rng.random((5, 5)) + 5, np.zeros((5, 5), np.uint8))
    result = ours([with_anomaly, without])
    assert result.num_skipped == 1
    assert result.num_negative == int(np.sum(with_anomaly[1] == 0))
    exact = PixelMetrics()
    exact.update(with_anomaly[0].astype(np.float32), with_anomaly[1])
    assert result.auprc == exact.compute().auprc


def test_anomaly_free_data_is_undefined():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ours([(np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8))])
    assert np.isnan(result.auprc) and np.isnan(result.fpr95) and result.num_skipped == 1
    assert any(issubclass(w.category, UndefinedMetricWarning) for w in caught)
