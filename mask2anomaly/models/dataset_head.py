"""DenseHybrid's dataset-posterior head: two logits per pixel, inlier and outlier.

Reference: Grcić and Šegvić, "DenseHybrid" (paper 001, Fig. 3-4); authors' code
``matejgrcic/DenseHybrid``, ``models/ladder_densenet.py`` (``logits_ood``) and
``models/deeplabv3/deeplabv3.py``: batch norm (momentum 0.01), ReLU and a 1x1 convolution with bias
to two channels, on the decoder's last dense features, parallel to the classifier. Here it sits on
the mask transformer's per-pixel mask features (stride 4) and on ESPNetv2's last decoder features
(stride 2); its logits are upsampled with the class scores (``ScoreContext``).
"""

from __future__ import annotations

import torch
from torch import nn

INLIER, OUTLIER = 0, 1
"""Channels of the head's logits: P(d_in | x) and P(d_out | x) after a softmax."""


class DatasetPosteriorHead(nn.Module):
    """``[B, C, h, w]`` features to ``[B, 2, h, w]`` dataset-posterior logits."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, momentum=0.01)
        self.conv = nn.Conv2d(channels, 2, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.norm(features)))
