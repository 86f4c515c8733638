"""Open-set consumers on painted scenes and a model whose queries follow the colours: thresholds,
Open-IoU (given, calibrated, cross-calibrated) and panoptic quality against counts made from the
model's raw output with plain tensor algebra and per-class loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_curve

from mask2anomaly.data.base import UNKNOWN
from mask2anomaly.inference import DatasetSource, Predictor, run
from mask2anomaly.inference.consumers.open_set import OpenIoU, ThresholdCalibration
from mask2anomaly.inference.consumers.panoptic import Mining, PanopticMetrics
from mask2anomaly.methods import parse_method
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic
from mask2anomaly.metrics import cross_calibrated_open_iou
from tests.inference.scripted import BLUE, GREEN, RED, K, PaintedReader, ScriptedMaskModel

SPLIT_A = [
    [(RED, (16, 24, 40, 56)), (BLUE, (20, 80, 44, 112))],
    [(RED, (28, 8, 60, 40)), (GREEN, (4, 64, 32, 128))],
]
SPLIT_B = [
    [(RED, (8, 88, 36, 120)), (GREEN, (40, 0, 64, 48))],
    [(BLUE, (12, 12, 40, 60)), (RED, (44, 70, 60, 100))],
    [(RED, (4, 4, 20, 36))],
]


@pytest.fixture(scope="module")
def predictor():
    return Predictor(ScriptedMaskModel().eval(), torch.device("cpu"))


def raw(model, image):
    """(closed-set prediction, Mask2Anomaly score) of one image from the raw output."""
    pixels, _ = model.preprocess([image])
    with torch.no_grad():
        out = model(pixels)
    masks = F.interpolate(out.mask_logits, size=image.shape[:2], mode="bilinear")[0].sigmoid()
    f = torch.einsum("qk,qhw->khw", out.class_logits[0].softmax(-1)[:, :K], masks)
    best, closed = f.max(0)
    return closed.numpy(), (1 - best).numpy()


def hand_counts(predictor, scenes):
    """Per image (closed, score, open-set ground truth) from the raw output and the painting."""
    reader = PaintedReader(scenes)
    out = []
    for i in range(len(reader)):
        sample = reader[i]
        closed, score = raw(predictor.model, sample.image)
        gt = sample.semantic.astype(np.int64)
        gt[gt == UNKNOWN] = K
        out.append((closed, score, gt))
    return out


def loop_iou(images, threshold):
    """(mIoU over known ground truth, Open-mIoU) by counting class by class."""
    open_iou, closed_iou = [], []
    for c in range(K + 1):
        tp = fp = fn = ctp = cfp = cfn = 0
        for closed, score, gt in images:
            opened = np.where(score > np.float32(threshold), K, closed)
            tp += int(((gt == c) & (opened == c)).sum())
            fp += int(((gt != c) & (opened == c)).sum())
            fn += int(((gt == c) & (opened != c)).sum())
            known = gt < K
            ctp += int(((gt == c) & (closed == c) & known).sum())
            cfp += int(((gt != c) & (closed == c) & known).sum())
            cfn += int(((gt == c) & (closed != c) & known).sum())
        open_iou.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
        if c < K:
            closed_iou.append(ctp / (ctp + cfp + cfn) if ctp + cfp + cfn else np.nan)
    return float(np.nanmean(closed_iou)), float(np.nanmean(open_iou[:K]))


def roc_threshold(images, target=0.95):
    scores = np.concatenate([s.ravel() for _, s, _ in images])
    labels = np.concatenate([(g == K).ravel() for _, _, g in images])
    _, tpr, thresholds = roc_curve(labels, scores)
    return float(thresholds[np.argmax(tpr > target)])


def test_open_iou_at_a_given_threshold(predictor):
    images = hand_counts(predictor, SPLIT_A)
    threshold = float(np.median(np.concatenate([s.ravel() for _, s, _ in images])))
    unknown = np.mean(np.concatenate([(s > threshold).ravel() for _, s, _ in images]))
    assert 0.2 < unknown < 0.8
    consumer = OpenIoU({"mask2anomaly": threshold})
    run(DatasetSource(PaintedReader(SPLIT_A)), predictor, [parse_method("mask2anomaly")], [consumer])
    result = consumer.result()["mask2anomaly"]
    miou, open_miou = loop_iou(images, threshold)
    assert result["miou"] == pytest.approx(miou, abs=1e-12)
    assert result["open_miou"] == pytest.approx(open_miou, abs=1e-12)
    assert 0.05 < open_miou < 0.95


def test_calibration_is_the_first_roc_point_above_95(predictor):
    calibration = ThresholdCalibration()
    run(DatasetSource(PaintedReader(SPLIT_B)), predictor, [parse_method("mask2anomaly")], [calibration])
    assert calibration.result()["mask2anomaly"] == roc_threshold(hand_counts(predictor, SPLIT_B))


def test_cross_calibration(predictor, tmp_path):
    consumers = {}
    for name, scenes in (("a", SPLIT_A), ("b", SPLIT_B)):
        consumers[name] = OpenIoU(defer=True, cache=tmp_path / name)
        run(DatasetSource(PaintedReader(scenes)), predictor, [parse_method("mask2anomaly")], [consumers[name]])
    result = cross_calibrated_open_iou(
        ("a", lambda: consumers["a"].split("mask2anomaly")), ("b", lambda: consumers["b"].split("mask2anomaly")), K
    )
    a, b = hand_counts(predictor, SPLIT_A), hand_counts(predictor, SPLIT_B)
    _, open_a = loop_iou(a, roc_threshold(b))
    _, open_b = loop_iou(b, roc_threshold(a))
    pooled_miou, _ = loop_iou(a + b, 0.0)
    assert result.splits["a"].threshold == roc_threshold(b)
    assert result.open_miou == pytest.approx((2 * open_a + 3 * open_b) / 5, abs=1e-12)
    assert result.miou == pytest.approx(pooled_miou, abs=1e-12)


def test_panoptic_finds_each_red_box_as_one_unknown_instance(predictor):
    """The red queries are unsure (top probability about 1/20), so the merge leaves their pixels
    unclaimed; RbA mining at 0.9 turns each red box (score about 0.95) into one unknown instance,
    and no blue box (score about 0.64)."""
    config = OpenSetPanoptic(mining="rba", score_threshold=0.9, min_area=50)
    consumer = PanopticMetrics([Mining("rba:mask2anomaly", config, "mask2anomaly")])
    run(DatasetSource(PaintedReader(SPLIT_B)), predictor, [parse_method("mask2anomaly")], [consumer])
    unknown = consumer.result()["rba:mask2anomaly"]["unknown"]
    assert unknown["rq"] == 1.0 and unknown["n"] == 1
    assert unknown["sq"] > 0.8
    stuff = consumer.result()["rba:mask2anomaly"]["stuff"]
    assert stuff["rq"] == 1.0
