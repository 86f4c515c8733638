"""Models: the mask transformer, its parts, and the readers of its checkpoint formats."""

from mask2anomaly.models.config import BackboneConfig, ModelConfig, SwinConfig
from mask2anomaly.models.espnetv2 import ESPNetV2Config, ESPNetV2Segmentation, load_espnetv2
from mask2anomaly.models.mask_transformer import MaskTransformer
from mask2anomaly.models.output import MaskPrediction, MaskTransformerOutput

__all__ = [
    "BackboneConfig",
    "ESPNetV2Config",
    "ESPNetV2Segmentation",
    "MaskPrediction",
    "MaskTransformer",
    "MaskTransformerOutput",
    "ModelConfig",
    "SwinConfig",
    "load_espnetv2",
]
