"""Batch normalisation with fixed statistics and affine parameters, as detectron2 uses in ResNets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``, never updated.

    Its state dict has the keys of ``nn.BatchNorm2d`` minus ``num_batches_tracked``. All four
    tensors are buffers, so they are neither trained nor touched by ``freeze_backbone``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` with ``y = x * scale + shift`` per channel."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift()
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


def conv_frozen_bn(x: torch.Tensor, conv: nn.Conv2d, norm: FrozenBatchNorm2d) -> torch.Tensor:
    """``norm(conv(x))`` as one convolution with the normalisation folded into its weights
    (frozen statistics make this exact up to rounding, and it saves two passes over the output)."""
    scale, shift = norm.scale_shift()
    weight = conv.weight * scale.view(-1, 1, 1, 1).to(conv.weight.dtype)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return F.conv2d(x, weight, bias.to(weight.dtype), conv.stride, conv.padding, conv.dilation, conv.groups)
