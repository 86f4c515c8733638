"""Pixel and component metrics on real benchmark label maps (RoadAnomaly21 validation labels from
the shared data folder, skipped when absent) with deterministic synthetic scores, against sklearn
and the brute-force SegEval."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from mask2anomaly.metrics import ComponentMetrics, PixelMetrics
from tests.metrics import naive


@pytest.mark.slow
def test_road_anomaly21_labels(shared_data):
    folder = shared_data / "validation" / "RoadAnomaly21" / "labels_masks"
    paths = sorted(folder.glob("*.png"))[:2]
    if len(paths) < 2:
        pytest.skip(f"RoadAnomaly21 labels not found under {folder}")
    rng = np.random.default_rng(0)
    images = []
    for path in paths:
        labels = np.asarray(Image.open(path))
        scores = (rng.random(labels.shape) * 0.6 + 0.5 * (labels == 1)).astype(np.float16)
        images.append((scores, labels))
    pixel = PixelMetrics()
    for scores, labels in images:
        pixel.update(scores, labels)
    result = pixel.compute()
    valid = [lab != 255 for _, lab in images]
    y = np.concatenate([lab[v] for (_, lab), v in zip(images, valid, strict=True)])
    s = np.concatenate([sc[v] for (sc, _), v in zip(images, valid, strict=True)]).astype(np.float64)
    assert result.auprc == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert result.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    components = ComponentMetrics(result.best_f1_threshold)
    for scores, labels in images:
        components.update(scores, labels)
    ours = components.compute()
    ref = naive.segeval(images, result.best_f1_threshold, 500, 100)
    assert (ours.siou, ours.ppv, ours.f1_star) == pytest.approx((ref["siou"], ref["ppv"], ref["f1_star"]), abs=1e-12)
