"""Open-set semantic (Open-IoU) and open-set panoptic (PQ) evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mask2anomaly import data as datasets
from mask2anomaly import save_model
from mask2anomaly.data.base import UNKNOWN, VOID
from mask2anomaly.engine.inference import open_model
from mask2anomaly.engine.open_set import evaluate_open_panoptic, evaluate_open_set_semantic
from mask2anomaly.errors import UserError
from mask2anomaly.methods import parse_method
from mask2anomaly.models import MaskTransformer
from tests.models.tiny import tiny_config

SPLIT_A = "synthetic:test?n=2&size=64x128"
SPLIT_B = "synthetic:test?n=3&size=64x128&seed=1"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    save_model(MaskTransformer(tiny_config("global_masked", num_classes=19)), path)
    return path


def _open_miou_by_hand(model_path, spec, threshold, k=19):
    """Open-mIoU with an explicit (K+1) x (K+1) confusion matrix."""
    predictor = open_model(str(model_path))
    method = parse_method("rba")
    confusion = np.zeros((k + 1, k + 1), np.int64)
    reader = datasets.open_spec(spec)
    for i in range(len(reader)):
        sample = reader[i]
        prediction = predictor.predict(sample.image, [method])
        pred = np.where(prediction.scores["rba"] >= np.float32(threshold), k, prediction.semantic)
        gt = sample.semantic.astype(np.int64)
        gt[gt == UNKNOWN] = k
        keep = gt != VOID
        for g, p in zip(gt[keep], pred[keep], strict=True):
            confusion[g, p] += 1
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou[:k]))


def test_open_iou_at_a_given_threshold_equals_a_hand_count(model_path, tmp_path):
    result = evaluate_open_set_semantic(str(model_path), [SPLIT_A], "rba", tmp_path, threshold=-4.0)
    assert (tmp_path / "open_set_semantic.json").exists()
    assert result["synthetic_test"]["open_miou"] == pytest.approx(_open_miou_by_hand(model_path, SPLIT_A, -4.0))


def test_cross_calibration_uses_the_other_split(model_path, tmp_path):
    result = evaluate_open_set_semantic(str(model_path), [SPLIT_A, SPLIT_B], "rba", tmp_path, cross_calibrate=True)
    calibrated = evaluate_open_set_semantic(str(model_path), [SPLIT_A], "rba", tmp_path / "c", calibration=SPLIT_B)
    splits = result["cross_calibrated"]["splits"]
    assert len(splits) == 2
    first = next(iter(splits.values()))
    assert first["threshold"] == pytest.approx(calibrated["threshold"])
    assert first["open_miou"] == pytest.approx(calibrated["synthetic_test"]["open_miou"])
    weights = [s["num_images"] for s in splits.values()]
    assert weights == [2, 3]
    expected = np.average([s["open_miou"] for s in splits.values()], weights=weights)
    assert result["cross_calibrated"]["open_miou"] == pytest.approx(expected)
    with pytest.raises(UserError, match="exactly one of"):
        evaluate_open_set_semantic(str(model_path), [SPLIT_A], "rba", tmp_path, threshold=0.1, calibration=SPLIT_B)


@pytest.mark.parametrize("mining", ["paper", "none"])
def test_open_panoptic_quality_has_the_unknown_class(model_path, tmp_path, mining):
    result = evaluate_open_panoptic(str(model_path), [SPLIT_A], tmp_path, mining=mining)["synthetic_test"]
    assert set(result) == {"all", "things", "stuff", "unknown"}
    for values in result.values():
        assert 0 <= values["pq"] <= 1 and values["n"] >= 1
