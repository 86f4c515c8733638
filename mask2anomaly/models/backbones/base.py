"""What every backbone provides: four feature maps at strides 4, 8, 16 and 32."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureSpec:
    """Channels and stride of one backbone output."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class: ``forward(x [B, 3, H, W]) -> [f4, f8, f16, f32]`` with ``f_s`` of shape
    ``[B, C_s, ceil(H / s), ceil(W / s)]`` (exact for inputs padded to a multiple of 32)."""

    feature_specs: tuple[FeatureSpec, ...]

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(spec.channels for spec in self.feature_specs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def freeze(self) -> None:
        """Stop gradients to every backbone weight (the paper trains with a frozen R50)."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
