"""Mask2Former's pixel decoder: a deformable-attention encoder over strides 8/16/32 and an FPN step
to stride 4 that produces the per-pixel mask embeddings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mask2anomaly.models.deformable_attention import MultiScaleDeformableAttention
from mask2anomaly.models.position_encoding import sine_position_encoding


@dataclass
class PixelDecoderOutput:
    """Attributes:
    mask_features: ``[B, mask_dim, H/4, W/4]`` per-pixel embeddings the mask logits are read from.
    multi_scale_features: three ``[B, conv_dim, H/s, W/s]`` maps for s = 32, 16, 8 (this order),
        the keys and values of the transformer decoder's cross-attention.
    """

    mask_features: torch.Tensor
    multi_scale_features: list[torch.Tensor]


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention, then a ReLU FFN."""

    def __init__(self, dim: int, heads: int, levels: int, points: int, ffn_dim: int) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dim, heads, levels, points)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor, shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x + pos, reference_points, x, shapes))
        return self.norm2(x + self.linear2(F.relu_(self.linear1(x))))


def _conv_gn(in_ch: int, out_ch: int, kernel: int, bias: bool, relu: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias),
        nn.GroupNorm(32, out_ch),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _reference_points(shapes: list[tuple[int, int]], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel centres of every level, normalised to [0, 1], as (x, y): ``[1, S, 2]``."""
    points = []
    for height, width in shapes:
        ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))
    return torch.cat(points, 0)[None]


class MSDeformAttnPixelDecoder(nn.Module):
    """Pixel decoder of Mask2Former (``MSDeformAttnPixelDecoder``).

    Args:
        in_channels: channels of the backbone outputs at strides 4, 8, 16, 32.
        conv_dim: encoder width.
        mask_dim: width of the mask embeddings.
        heads, points, layers, ffn_dim: deformable encoder settings.
        common_stride: stride of the mask features.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        conv_dim: int = 256,
        mask_dim: int = 256,
        heads: int = 8,
        points: int = 4,
        layers: int = 6,
        ffn_dim: int = 1024,
        common_stride: int = 4,
    ) -> None:
        super().__init__()
        self.num_levels = 3
        strides = (4, 8, 16, 32)
        transformer_channels = in_channels[-self.num_levels :]
        self.input_proj = nn.ModuleList([_conv_gn(ch, conv_dim, 1, bias=True) for ch in reversed(transformer_channels)])
        self.level_embed = nn.Parameter(torch.empty(self.num_levels, conv_dim))
        self.encoder = nn.ModuleList(
            [DeformableEncoderLayer(conv_dim, heads, self.num_levels, points, ffn_dim) for _ in range(layers)]
        )
        self.num_fpn_levels = int(math.log2(strides[-self.num_levels]) - math.log2(common_stride))
        self.lateral_convs = nn.ModuleList(
            [_conv_gn(ch, conv_dim, 1, bias=False) for ch in in_channels[: self.num_fpn_levels]][::-1]
        )
        self.output_convs = nn.ModuleList(
            [_conv_gn(conv_dim, conv_dim, 3, bias=False, relu=True) for _ in range(self.num_fpn_levels)]
        )
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.level_embed)
        for module in [*self.input_proj, *self.lateral_convs, *self.output_convs]:
            conv = module[0]
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)
        for layer in self.encoder:
            for linear in (layer.linear1, layer.linear2):
                nn.init.xavier_uniform_(linear.weight)
                nn.init.zeros_(linear.bias)

    def forward(self, features: list[torch.Tensor]) -> PixelDecoderOutput:
        """``features``: backbone maps at strides 4, 8, 16, 32."""
        levels = features[::-1][: self.num_levels]
        tokens, positions, shapes = [], [], []
        for i, x in enumerate(levels):
            height, width = x.shape[-2:]
            shapes.append((height, width))
            tokens.append(self.input_proj[i](x).flatten(2).transpose(1, 2))
            pos = sine_position_encoding(height, width, tokens[-1].shape[-1], x.device, x.dtype)
            positions.append(pos.flatten(1).transpose(0, 1) + self.level_embed[i])
        src = torch.cat(tokens, 1)
        pos = torch.cat(positions, 0)[None]
        reference_points = _reference_points(shapes, src.device, src.dtype)
        for layer in self.encoder:
            src = layer(src, pos, reference_points, shapes)

        batch = src.shape[0]
        # Token-major [B, h*w, C] chunks are channels-last [B, C, h, w] maps: view them, no copy.
        outputs = [
            chunk.reshape(batch, h, w, -1).permute(0, 3, 1, 2)
            for chunk, (h, w) in zip(src.split([h * w for h, w in shapes], dim=1), shapes, strict=True)
        ]
        for lateral, output_conv, x in zip(
            self.lateral_convs, self.output_convs, features[: self.num_fpn_levels][::-1], strict=True
        ):
            y = lateral(x)
            y = y + F.interpolate(outputs[-1], size=y.shape[-2:], mode="bilinear", align_corners=False)
            outputs.append(output_conv(y))
        return PixelDecoderOutput(self.mask_features(outputs[-1]), outputs[: self.num_levels])
