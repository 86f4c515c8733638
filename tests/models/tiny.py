"""Small architectures for fast tests."""

from __future__ import annotations

from mask2anomaly.models import BackboneConfig, ModelConfig


def tiny_config(attention: str = "masked", backbone: str = "resnet18", **overrides) -> ModelConfig:
    values = dict(
        backbone=BackboneConfig(name=backbone),
        num_classes=5,
        num_queries=8,
        hidden_dim=64,
        num_heads=4,
        dim_feedforward=96,
        num_decoder_layers=3,
        conv_dim=64,
        mask_dim=64,
        encoder_layers=1,
        encoder_feedforward_dim=96,
        attention=attention,
    )
    values.update(overrides)
    return ModelConfig(**values)
