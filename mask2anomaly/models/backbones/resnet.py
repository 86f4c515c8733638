"""ResNet-18/34/50/101 backbones (He et al., CVPR 2016) in the torchvision parameter layout.

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

RESNET_DEPTHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)


def _shortcut(x: torch.Tensor, downsample: nn.Sequential | None) -> torch.Tensor:
    return x if downsample is None else conv_frozen_bn(x, downsample[0], downsample[1])


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
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
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = _conv(in_ch, width, 1)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride)
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
    """ResNet trunk returning the outputs of its four stages (strides 4, 8, 16, 32)."""

    def __init__(self, name: str = "resnet50") -> None:
        super().__init__()
        block_type, depths = RESNET_DEPTHS[name]
        block = Bottleneck if block_type == "bottleneck" else BasicBlock
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        in_ch = 64
        specs = []
        for stage, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512), strict=True)):
            blocks = []
            for i in range(depth):
                stride = 2 if (i == 0 and stage > 0) else 1
                blocks.append(block(in_ch, width, stride))
                in_ch = width * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            specs.append(FeatureSpec(in_ch, 4 * 2**stage))
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
