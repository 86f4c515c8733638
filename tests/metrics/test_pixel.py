"""Pixel metrics: exact protocol against scikit-learn and a brute-force loop, SMIYC protocol
against a naive re-implementation of its binning, streaming/merging and bad input."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from mask2anomaly.errors import UserError
from mask2anomaly.metrics import PixelMetrics, UndefinedMetricWarning, pixel_metrics
from tests.metrics import naive

FIELDS = ("auprc", "auroc", "fpr95", "best_f1", "best_f1_threshold")


def run(images, protocol="exact"):
    metric = PixelMetrics(protocol)
    for scores, labels in images:
        metric.update(scores, labels)
    return metric.compute()


def sklearn_reference(images):
    scores = np.concatenate([np.ravel(s).astype(np.float64) for s, _ in images])
    labels = np.concatenate([np.ravel(lab) for _, lab in images])
    keep = labels != 255
    y, s = labels[keep], scores[keep]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {
        "auprc": average_precision_score(y, s),
        "auroc": roc_auc_score(y, s),
        "fpr95": fpr[np.argmax(tpr >= 0.95)],
    }


@st.composite
def datasets(draw, dtype=np.float32):
    """1-4 small images with heavily tied scores, void pixels, anomaly-free and all-void images,
    always with at least one valid anomaly and one valid inlier pixel overall."""
    levels = draw(st.lists(st.floats(-3, 3, width=32), min_size=1, max_size=6))
    images = []
    for _ in range(draw(st.integers(1, 4))):
        size = draw(st.integers(1, 12))
        scores = np.array(draw(st.lists(st.sampled_from(levels), min_size=size, max_size=size)), dtype)
        kind = draw(st.sampled_from(["mixed", "no-anomaly", "all-void"]))
        choices = {"mixed": [0, 1, 255], "no-anomaly": [0, 255], "all-void": [255]}[kind]
        labels = np.array(draw(st.lists(st.sampled_from(choices), min_size=size, max_size=size)), np.uint8)
        images.append((scores.reshape(1, -1), labels.reshape(1, -1)))
    images.append((np.array([[levels[0], levels[-1]]], dtype), np.array([[1, 0]], np.uint8)))
    return images


@settings(max_examples=150, deadline=None)
@given(datasets())
def test_exact_equals_sklearn(images):
    ours = run(images)
    ref = sklearn_reference(images)
    for name, value in ref.items():
        assert getattr(ours, name) == pytest.approx(value, abs=1e-9), name


@settings(max_examples=60, deadline=None)
@given(datasets(dtype=np.float16))
def test_exact_equals_brute_force_float16(images):
    ours = run(images)
    ref = naive.exact_metrics(images)
    for name in FIELDS:
        assert getattr(ours, name) == pytest.approx(ref[name], abs=1e-9), name


@settings(max_examples=40, deadline=None)
@given(datasets(), st.integers(0, 5))
def test_merge_equals_sequential(images, cut):
    cut = min(cut, len(images))
    first, second = PixelMetrics(), PixelMetrics()
    for scores, labels in images[:cut]:
        first.update(scores, labels)
    for scores, labels in images[cut:]:
        second.update(scores, labels)
    first.merge(second)
    assert first.compute() == run(images)


def test_large_continuous_scores_equal_sklearn():
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        scores = rng.normal(size=(64, 96)).astype(np.float32)
        labels = (rng.random((64, 96)) < 0.1).astype(np.uint8)
        scores[labels == 1] += 1.0
        labels[:4] = 255
        images.append((scores if i else scores.astype(np.float16), labels))
    ours = run(images)
    ref = sklearn_reference(images)
    for name, value in ref.items():
        assert getattr(ours, name) == pytest.approx(value, abs=1e-9), name


def test_compaction_keeps_exact_answer():
    """Quantised scores: the per-image tables are merged after eight images; results unchanged."""
    rng = np.random.default_rng(1)
    images = [
        ((rng.integers(0, 50, size=(20, 20)) / 49).astype(np.float32), (rng.random((20, 20)) < 0.2).astype(np.uint8))
        for _ in range(11)
    ]
    metric = PixelMetrics()
    for scores, labels in images:
        metric.update(scores, labels)
    assert len(metric._neg) < len(images)
    ref = sklearn_reference(images)
    for name, value in ref.items():
        assert getattr(metric.compute(), name) == pytest.approx(value, abs=1e-9), name


def test_best_f1_and_threshold_against_brute_force():
    rng = np.random.default_rng(2)
    images = [
        (rng.integers(0, 7, size=(5, 6)).astype(np.float64) / 3, rng.integers(0, 2, size=(5, 6))) for _ in range(3)
    ]
    ours = run(images)
    ref = naive.exact_metrics(images)
    assert ours.best_f1 == pytest.approx(ref["best_f1"], abs=1e-12)
    assert ours.best_f1_threshold == ref["best_f1_threshold"]


def test_mixed_dtypes_and_torch_inputs():
    rng = np.random.default_rng(3)
    s16 = rng.random((8, 8)).astype(np.float16)
    s32 = rng.random((8, 8)).astype(np.float32)
    l1, l2 = rng.integers(0, 2, (8, 8)), rng.integers(0, 2, (8, 8))
    metric = PixelMetrics()
    metric.update(torch.from_numpy(s16), torch.from_numpy(l1))
    metric.update(s32, l2)
    ref = sklearn_reference([(s16, l1), (s32, l2)])
    assert metric.compute().auprc == pytest.approx(ref["auprc"], abs=1e-9)
    assert pixel_metrics(np.stack([s16.astype(np.float32), s32]), np.stack([l1, l2])).auprc == pytest.approx(
        ref["auprc"], abs=1e-9
    )


def test_negative_zero_ties_with_zero():
    scores = np.array([[-0.0, 0.0, 1.0, 0.0]], np.float32)
    labels = np.array([[1, 0, 1, 0]])
    assert run([(scores, labels)]).auprc == pytest.approx(average_precision_score(labels.ravel(), scores.ravel()))


@pytest.mark.parametrize("protocol", ["exact", "smiyc"])
def test_no_anomaly_gives_nan_and_warning(protocol):
    with pytest.warns(UndefinedMetricWarning, match="no anomaly pixel"):
        result = run([(np.array([[0.1, 0.5]], np.float32), np.array([[0, 255]]))], protocol)
    assert math.isnan(result.auprc) and math.isnan(result.fpr95) and result.num_negative == 1


def test_all_void_gives_nan():
    with pytest.warns(UndefinedMetricWarning):
        result = run([(np.zeros((2, 2), np.float32), np.full((2, 2), 255))])
    assert math.isnan(result.auroc) and result.num_positive == 0 and result.num_negative == 0


def test_only_anomalies_defines_ap_but_not_auroc():
    with pytest.warns(UndefinedMetricWarning, match="no inlier"):
        result = run([(np.array([[0.2, 0.9]], np.float32), np.array([[1, 1]]))])
    assert result.auprc == 1.0 and math.isnan(result.auroc)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        (np.array([[np.nan, 0.1]], np.float32), np.array([[0, 1]]), "NaN"),
        (np.array([[np.inf, 0.1]], np.float32), np.array([[0, 1]]), "infinite"),
        (np.array([[np.inf, 0.1]], np.float16), np.array([[0, 1]]), "infinite"),
        (np.zeros((2, 3), np.float32), np.zeros((3, 2), np.uint8), "shape"),
        (np.zeros((1, 2), np.float32), np.array([[0, 7]]), "unexpected label values 7"),
        (np.zeros((1, 2), np.int64), np.array([[0, 1]]), "float16, float32 or float64"),
    ],
)
@pytest.mark.parametrize("protocol", ["exact", "smiyc"])
def test_bad_input_raises_user_error(scores, labels, message, protocol):
    with pytest.raises(UserError, match=message):
        PixelMetrics(protocol).update(scores, labels, source="img.npy")


def test_nan_on_void_pixels_is_ignored():
    scores = np.array([[np.nan, 0.2, 0.8]], np.float32)
    labels = np.array([[255, 0, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run([(scores, labels)]).auprc == 1.0


# --- SMIYC protocol -------------------------------------------------------------------------------


@st.composite
def unit_datasets(draw):
    images = []
    for _ in range(draw(st.integers(1, 3))):
        size = draw(st.integers(2, 30))
        values = draw(st.lists(st.floats(0, 1), min_size=size, max_size=size))
        labels = draw(st.lists(st.sampled_from([0, 0, 1, 255]), min_size=size, max_size=size))
        images.append((np.array(values, np.float32).reshape(1, -1), np.array(labels, np.uint8).reshape(1, -1)))
    images.append((np.array([[0.9, 0.1]], np.float32), np.array([[1, 0]], np.uint8)))
    return images


@settings(max_examples=60, deadline=None)
@given(unit_datasets(), st.booleans())
def test_smiyc_equals_naive_binning(images, float16):
    metric = PixelMetrics("smiyc", smiyc_float16=float16)
    for scores, labels in images:
        metric.update(scores, labels)
    ours = metric.compute()
    ref = naive.smiyc_metrics(images, float16=float16)
    for name in FIELDS:
        assert getattr(ours, name) == pytest.approx(ref[name], abs=1e-12), name


def test_smiyc_bins_many_quantiles_close_to_exact():
    """With more than 384 pixels per class SMIYC bins; its AP stays within a point of the exact AP."""
    rng = np.random.default_rng(4)
    images = []
    for _ in range(3):
        labels = (rng.random((40, 50)) < 0.3).astype(np.uint8)
        scores = np.clip(rng.normal(0.3 + 0.3 * labels, 0.15), 0, 1).astype(np.float32)
        images.append((scores, labels))
    smiyc = run(images, "smiyc")
    ref = naive.smiyc_metrics(images)
    assert smiyc.auprc == pytest.approx(ref["auprc"], abs=1e-12)
    assert smiyc.auprc == pytest.approx(run(images).auprc, abs=0.01)


def test_smiyc_float16_overflow_is_an_error():
    with pytest.raises(UserError, match="overflow float16"):
        PixelMetrics("smiyc").update(np.array([[1e6, 0.0]], np.float32), np.array([[1, 0]]))


def test_unknown_protocol_and_merge_mismatch():
    with pytest.raises(UserError, match="protocol"):
        PixelMetrics("binned")
    with pytest.raises(UserError, match="different protocols"):
        PixelMetrics().merge(PixelMetrics("smiyc"))


def test_merge_widens_float16_state_with_float32_state():
    rng = np.random.default_rng(6)
    images = [(rng.random((10, 10)).astype(dtype), rng.integers(0, 2, (10, 10))) for dtype in (np.float16, np.float32)]
    narrow, wide = PixelMetrics(), PixelMetrics()
    narrow.update(*images[0])
    wide.update(*images[1])
    narrow.merge(wide)
    ref = sklearn_reference(images)
    for name, value in ref.items():
        assert getattr(narrow.compute(), name) == pytest.approx(value, abs=1e-9), name


@pytest.mark.parametrize("protocol", ["exact", "smiyc"])
def test_state_survives_pickling_for_sharded_evaluation(protocol):
    rng = np.random.default_rng(8)
    images = [(rng.random((9, 9)).astype(np.float32), rng.integers(0, 2, (9, 9))) for _ in range(3)]
    shard = PixelMetrics(protocol)
    for scores, labels in images[1:]:
        shard.update(scores, labels)
    main_state = PixelMetrics(protocol)
    main_state.update(*images[0])
    main_state.merge(pickle.loads(pickle.dumps(shard)))
    assert main_state.compute() == run(images, protocol)
