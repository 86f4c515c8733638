"""Pseudo labels: a set without semantic labels gets the initial network's predictions as
closed-set targets, its anomaly pixels void, computed once per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mask2anomaly.data.base import VOID, Sample
from mask2anomaly.errors import UserError
from mask2anomaly.models.espnetv2 import ESPNetV2Config, ESPNetV2Segmentation
from mask2anomaly.training.config import DataConfig
from mask2anomaly.training.data import TrainingData
from mask2anomaly.training.pseudo_labels import PseudoLabeller


def test_labels_are_the_networks_argmax_with_anomalies_void():
    torch.manual_seed(0)
    model = ESPNetV2Segmentation(ESPNetV2Config(scale=0.5, num_classes=5, background_channel=False)).eval()
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    anomaly = np.zeros((48, 80), np.uint8)
    anomaly[10:20, 30:50] = 1
    labels = PseudoLabeller(model).labels(0, Sample("x", image, anomaly=anomaly))
    pixels, _ = model.preprocess([image])
    with torch.no_grad():
        expected = model(pixels).argmax(1)[0].numpy()
    expected[anomaly == 1] = VOID
    np.testing.assert_array_equal(labels, expected)


def test_a_run_without_an_initial_network_cannot_pseudo_label():
    config = DataConfig(
        train="synthetic:train?n=2&size=64x128", crop_size=(64, 96), short_edge=(56, 72), pseudo_labels=True
    )
    with pytest.raises(UserError, match="needs the initial network"):
        TrainingData(config, 19, 0)
