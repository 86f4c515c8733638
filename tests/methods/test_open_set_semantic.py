"""Open-set semantic prediction and its TPR-95 threshold on constructed cases."""

from __future__ import annotations

import pytest
import torch

from mask2anomaly.errors import UserError
from mask2anomaly.methods import MaxLogit, ScoreContext
from mask2anomaly.methods.open_set_semantic import calibrate_open_set_threshold, open_set_semantic


def test_pixels_above_threshold_become_the_unknown_class():
    # K = 3 per-pixel logits on one row of 4 pixels: class 0, class 2, class 1 (weak), class 1
    logits = torch.tensor([[[[5.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.5, 4.0]], [[0.0, 6.0, 0.0, 0.0]]]])
    out = open_set_semantic(ScoreContext.from_logits(logits, (1, 4)), MaxLogit(), threshold=-1.0)
    assert out.closed.tolist() == [[[0, 2, 1, 1]]]
    torch.testing.assert_close(out.scores, torch.tensor([[[-5.0, -6.0, -0.5, -4.0]]]))
    assert out.prediction.tolist() == [[[0, 2, 3, 1]]]


def test_a_score_equal_to_the_threshold_stays_known():
    logits = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.0]]]])
    out = open_set_semantic(ScoreContext.from_logits(logits, (1, 2)), MaxLogit(), threshold=-1.0)
    assert out.prediction.tolist() == [[[0, 2]]]


def test_calibration_reaches_tpr_strictly_above_95_percent():
    # 20 anomaly pixels scored 1..20: a TPR above 0.95 needs all 20, so the threshold is 1; the
    # inliers (scored 0.5, and 30 on a void pixel) do not move it. At TPR 0.9 the ROC points 2..19
    # are collinear and dropped (DenseHybrid reads the curve with sklearn's dropping): 1 again.
    scores = torch.cat([torch.arange(1, 21, dtype=torch.float32), torch.tensor([0.5, 0.5, 30.0])]).view(1, 1, 23)
    labels = torch.tensor([1] * 20 + [0, 0, 255]).view(1, 1, 23)
    assert (
        calibrate_open_set_threshold([(scores[:, :, :10], labels[:, :, :10]), (scores[:, :, 10:], labels[:, :, 10:])])
        == 1.0
    )
    assert calibrate_open_set_threshold([(scores, labels)], tpr=0.9) == 1.0


def test_calibration_without_anomalies_is_an_error():
    with pytest.raises(UserError, match="without anomaly"):
        calibrate_open_set_threshold([(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))])
