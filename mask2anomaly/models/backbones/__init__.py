"""Backbones: each turns an image batch into four feature maps at strides 4, 8, 16, 32."""

from __future__ import annotations

from mask2anomaly.models.backbones.base import Backbone, FeatureSpec
from mask2anomaly.models.config import BackboneConfig

__all__ = ["Backbone", "FeatureSpec", "build_backbone"]


def build_backbone(config: BackboneConfig) -> Backbone:
    """Construct the backbone named by ``config`` (weights are loaded by the caller)."""
    if config.name.startswith("resnet"):
        from mask2anomaly.models.backbones.resnet import ResNet

        assert config.resnet is not None
        return ResNet(config.resnet)
    if config.name.startswith("swin"):
        from mask2anomaly.models.backbones.swin import Swin

        assert config.swin is not None
        return Swin(config.swin)
    from mask2anomaly.models.backbones.efficientnet_lite import EfficientNetLite0

    return EfficientNetLite0()
