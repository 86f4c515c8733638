"""ResNet backbones (He et al., CVPR 2016) in the torchvision parameter layout: ResNet-18/34/50/101
and any configuration Hugging Face's ``ResNetConfig`` describes (block type, depths, widths, stem
width, where the stride sits).

The layout is torchvision's (``conv1``, ``bn1``, ``layer{1..4}.{i}.conv{1,2,3}``, ``bn{1,2,3}``,
``downsample.{0,1}``) with the stride of bottleneck blocks on the 3x3 convolution, which is how
Mask2Former configures its R50 (``STRIDE_IN_1X1: False``) and how the Barlow Twins R50 used by
Mask2Anomaly is published. Normalisation layers are frozen batch norms, as in detectron2, folded
into the convolutions; the trunk runs in channels-last memory format (about 30% faster on CPU), and
so are its outputs. Weight files in the detectron2 or Hugging Face layout are renamed by
:mod:`mask2anomaly.models.formats`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mask2anomaly.models.backbones.base import Backbone, FeatureSpec
from mask2anomaly.models.backbones.frozen_batchnorm import FrozenBatchNorm2d, conv_frozen_bn
from mask2anomaly.models.config import ResNetConfig


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)


def _shortcut(x: torch.Tensor, downsample: nn.Sequential | None) -> torch.Tensor:
    return x if downsample is None else conv_frozen_bn(x, downsample[0], downsample[1])


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, ``out_ch`` wide; the first carries the stride."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, stride_in_1x1: bool = False) -> None:
        super().__init__()
        width = out_ch
        self.conv1 = _conv(in_ch, width, 3, stride)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = _conv(width, out_ch, 3)
        self.bn2 = FrozenBatchNorm2d(out_ch)
        self.downsample = (
            nn.Sequential(_conv(in_ch, out_ch, 1, stride), FrozenBatchNorm2d(out_ch))
            if stride != 1 or in_ch != out_ch
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(conv_frozen_bn(x, self.conv1, self.bn1))
        out = conv_frozen_bn(out, self.conv2, self.bn2)
        return F.relu(out + _shortcut(x, self.downsample))


class Bottleneck(nn.Module):
    """1x1 to a quarter of ``out_ch``, 3x3, 1x1 back to ``out_ch``; the stride on the 3x3 (or on the
    first 1x1 with ``stride_in_1x1``)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, stride_in_1x1: bool = False) -> None:
        super().__init__()
        width = out_ch // 4
        self.conv1 = _conv(in_ch, width, 1, stride if stride_in_1x1 else 1)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, 1 if stride_in_1x1 else stride)
        self.bn2 = FrozenBatchNorm2d(width)
        self.conv3 = _conv(width, out_ch, 1)
        self.bn3 = FrozenBatchNorm2d(out_ch)
        self.downsample = (
            nn.Sequential(_conv(in_ch, out_ch, 1, stride), FrozenBatchNorm2d(out_ch))
            if stride != 1 or in_ch != out_ch
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(conv_frozen_bn(x, self.conv1, self.bn1))
        out = F.relu(conv_frozen_bn(out, self.conv2, self.bn2))
        out = conv_frozen_bn(out, self.conv3, self.bn3)
        return F.relu(out + _shortcut(x, self.downsample))


class ResNet(Backbone):
    """ResNet trunk returning the outputs of its four stages (strides 4, 8, 16, 32; 8..64 when the
    first stage downsamples too)."""

    def __init__(self, config: ResNetConfig | None = None) -> None:
        super().__init__()
        config = config or ResNetConfig()
        block = Bottleneck if config.layer_type == "bottleneck" else BasicBlock
        stem = config.embedding_size
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(stem)
        in_ch, stride_so_far = stem, 4
        specs = []
        for stage, (depth, out_ch) in enumerate(zip(config.depths, config.hidden_sizes, strict=True)):
            first_stride = 2 if (stage > 0 or config.downsample_in_first_stage) else 1
            stride_so_far *= first_stride
            blocks = []
            for i in range(depth):
                blocks.append(block(in_ch, out_ch, first_stride if i == 0 else 1, config.downsample_in_bottleneck))
                in_ch = out_ch
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            specs.append(FeatureSpec(in_ch, stride_so_far))
        self.feature_specs = tuple(specs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu(conv_frozen_bn(x, self.conv1, self.bn1))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features
