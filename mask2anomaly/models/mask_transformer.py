"""The Mask2Former / Mask2Anomaly meta-architecture: backbone -> pixel decoder -> transformer decoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mask2anomaly.errors import UserError
from mask2anomaly.models.backbones import build_backbone
from mask2anomaly.models.backbones.pretrained import load_pretrained_backbone
from mask2anomaly.models.config import ModelConfig
from mask2anomaly.models.dataset_head import DatasetPosteriorHead
from mask2anomaly.models.output import MaskTransformerOutput
from mask2anomaly.models.pixel_decoder import MSDeformAttnPixelDecoder
from mask2anomaly.models.preprocess import SIZE_DIVISOR, normalize_images
from mask2anomaly.models.transformer_decoder import MaskedTransformerDecoder


class MaskTransformer(nn.Module):
    """A mask-classification segmentation model: N queries, each predicting a class distribution over
    K known classes + "no object" and a mask logit map at stride 4.

    Build it from a :class:`ModelConfig`; load weights with :func:`mask2anomaly.load_model` (Hugging
    Face, detectron2 and native checkpoints) or ``load_state_dict``.

    Example:
        >>> model = MaskTransformer(ModelConfig(num_classes=3, num_queries=5, hidden_dim=64, conv_dim=64,
        ...     mask_dim=64, num_heads=4, dim_feedforward=64, encoder_feedforward_dim=64,
        ...     encoder_layers=1, num_decoder_layers=2, backbone=BackboneConfig("resnet18")))
        >>> out = model(torch.zeros(1, 3, 64, 64))
        >>> tuple(out.class_logits.shape), tuple(out.mask_logits.shape)
        ((1, 5, 4), (1, 5, 16, 16))
    """

    def __init__(self, config: ModelConfig, load_pretrained: bool = True) -> None:
        """Build the model; ``load_pretrained=False`` skips ``config.backbone.pretrained`` (used when
        a whole checkpoint is about to be loaded)."""
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            self.backbone.channels,
            conv_dim=config.conv_dim,
            mask_dim=config.mask_dim,
            heads=config.num_heads,
            points=config.encoder_points,
            layers=config.encoder_layers,
            ffn_dim=config.encoder_feedforward_dim,
            common_stride=config.common_stride,
        )
        self.decoder = MaskedTransformerDecoder(
            in_channels=config.conv_dim,
            num_classes=config.num_classes,
            hidden_dim=config.hidden_dim,
            num_heads=config.num_heads,
            dim_feedforward=config.dim_feedforward,
            num_layers=config.num_decoder_layers,
            num_queries=config.num_queries,
            mask_dim=config.mask_dim,
            pre_norm=config.pre_norm,
            enforce_input_projection=config.enforce_input_projection,
            attention=config.attention,
            gma_weights=config.gma_weights,
        )
        self.dataset_head = DatasetPosteriorHead(config.mask_dim) if config.dataset_head else None
        if config.backbone.pretrained and load_pretrained:
            load_pretrained_backbone(self.backbone, config.backbone.pretrained)
        if config.backbone.freeze:
            self.backbone.freeze()

    def forward(self, pixel_values: torch.Tensor, return_aux: bool | None = None) -> MaskTransformerOutput:
        """Predict classes and masks.

        Args:
            pixel_values: ``[B, 3, H, W]`` normalised as by :meth:`preprocess`; H and W should be
                multiples of 32.
            return_aux: also return the intermediate predictions (default: in training mode only).

        Returns:
            :class:`MaskTransformerOutput` with ``class_logits [B, Q, K + 1]`` and
            ``mask_logits [B, Q, H/4, W/4]`` (and ``dataset_logits [B, 2, H/4, W/4]`` with the head).
        """
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise UserError(f"model input has shape {tuple(pixel_values.shape)}, expected [B, 3, H, W]")
        with_aux = self.training if return_aux is None else return_aux
        features = self.backbone(pixel_values)
        pixels = self.pixel_decoder(features)
        predictions = self.decoder(pixels.multi_scale_features, pixels.mask_features, intermediate=with_aux)
        final = predictions[-1]
        aux = tuple(predictions[:-1]) if with_aux else ()
        dataset = None if self.dataset_head is None else self.dataset_head(pixels.mask_features)
        return MaskTransformerOutput(final.class_logits, final.mask_logits, aux, dataset)

    def preprocess(self, images: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Normalise and pad ``[H, W, 3]`` uint8 RGB images into ``pixel_values [B, 3, H', W']`` on the
        model's device; also returns each image's original ``(H, W)``."""
        device = next(self.parameters()).device
        return normalize_images(images, SIZE_DIVISOR, device)

    def freeze_backbone(self) -> None:
        """Stop gradients to the backbone (the paper fine-tunes with it frozen)."""
        self.backbone.freeze()
