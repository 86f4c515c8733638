"""Detectron2 checkpoints of Mask2Former and Mask2Anomaly (``.pth`` / ``.pkl`` holding a dict with
``model``): parameter names and the architecture they imply.

The official files carry no configuration, so it is read off the weight shapes: classes, queries,
widths, layer counts, ResNet depth, and GMA (``multihead_attn_foreground`` /
``multihead_attn_background``) versus single cross-attention. What shapes cannot tell — the number
of attention heads (8), pre-norm (off) and plain cross versus masked attention (masked) — takes
the Mask2Former default and can be overridden. Each GMA layer's ``fusion_layer`` Conv2d(200, 100)
is created but never used by the official code; its weights are dropped here.
ResNet backbones only (``backbone.stem`` / ``backbone.res{2..5}``).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from mask2anomaly.errors import CheckpointError
from mask2anomaly.models.config import BackboneConfig, ModelConfig
from mask2anomaly.models.formats.state_dict import fpn_levels, rename

HEAD = r"sem_seg_head\."
PIXEL = HEAD + r"pixel_decoder\."
PRED = HEAD + r"predictor\."


def _count(state: dict[str, Any], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})


def config_from_detectron2(
    state: dict[str, torch.Tensor], source: str, overrides: dict[str, Any] | None = None
) -> ModelConfig:
    """Infer the :class:`ModelConfig` of a detectron2 Mask2Former / Mask2Anomaly state dict."""
    try:
        class_w = state["sem_seg_head.predictor.class_embed.weight"]
        query_feat = state["sem_seg_head.predictor.query_feat.weight"]
        mask_w = state["sem_seg_head.pixel_decoder.mask_features.weight"]
        enc_ffn = state["sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear1.weight"]
        dec_ffn = state["sem_seg_head.predictor.transformer_ffn_layers.0.linear1.weight"]
    except KeyError as err:
        raise CheckpointError(f"{source}: not a Mask2Former detectron2 checkpoint (no {err.args[0]})") from None
    if "backbone.stem.conv1.weight" not in state:
        raise CheckpointError(f"{source}: only ResNet backbones are supported in detectron2 checkpoints")
    blocks = tuple(_count(state, rf"backbone\.res{r}\.(\d+)\.") for r in range(2, 6))
    bottleneck = "backbone.res2.0.conv3.weight" in state
    names = {
        (True, (3, 4, 6, 3)): "resnet50",
        (True, (3, 4, 23, 3)): "resnet101",
        (False, (2, 2, 2, 2)): "resnet18",
        (False, (3, 4, 6, 3)): "resnet34",
    }
    backbone = names.get((bottleneck, blocks))
    if backbone is None:
        raise CheckpointError(f"{source}: unsupported ResNet with {blocks} blocks per stage")
    gma = any("multihead_attn_foreground" in k for k in state)
    values: dict[str, Any] = dict(
        backbone=BackboneConfig(name=backbone),
        num_classes=class_w.shape[0] - 1,
        num_queries=query_feat.shape[0],
        hidden_dim=class_w.shape[1],
        dim_feedforward=dec_ffn.shape[0],
        num_decoder_layers=_count(state, r"sem_seg_head\.predictor\.transformer_ffn_layers\.(\d+)\."),
        enforce_input_projection="sem_seg_head.predictor.input_proj.0.weight" in state
        and mask_w.shape[1] == class_w.shape[1],
        conv_dim=mask_w.shape[1],
        mask_dim=mask_w.shape[0],
        encoder_layers=_count(state, r"sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(\d+)\."),
        encoder_feedforward_dim=enc_ffn.shape[0],
        attention="global_masked" if gma else "masked",
        gma_weights="separate",
    )
    values.update(overrides or {})
    heads = values.get("num_heads", 8)
    offsets = state["sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.attention_weights.weight"]
    values["encoder_points"] = offsets.shape[0] // (heads * 3)
    try:
        return ModelConfig(**values)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: {err}") from None


def resnet_rules(prefix: str, target: str) -> list[tuple[str, str]]:
    """Rename rules from detectron2's ResNet names (``stem.conv1``, ``res{2..5}.{i}.conv{k}.norm``,
    ``shortcut``) under regex ``prefix`` to the torchvision names under ``target``."""
    rules = [
        (prefix + r"stem\.conv1\.weight", f"{target}conv1.weight"),
        (prefix + r"stem\.conv1\.norm\.(.*)", rf"{target}bn1.\1"),
    ]
    for r in range(2, 6):
        rules += [
            (prefix + rf"res{r}\.(\d+)\.conv(\d)\.weight", rf"{target}layer{r - 1}.\1.conv\2.weight"),
            (prefix + rf"res{r}\.(\d+)\.conv(\d)\.norm\.(.*)", rf"{target}layer{r - 1}.\1.bn\2.\3"),
            (prefix + rf"res{r}\.(\d+)\.shortcut\.weight", rf"{target}layer{r - 1}.\1.downsample.0.weight"),
            (prefix + rf"res{r}\.(\d+)\.shortcut\.norm\.(.*)", rf"{target}layer{r - 1}.\1.downsample.1.\2"),
        ]
    return rules


def convert_detectron2_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Rename a detectron2 state dict to this package's parameter names."""
    num_fpn = fpn_levels(config)
    rules: list[tuple[str, str]] = [
        (r"criterion\..*", ""),
        (r"pixel_(mean|std)", ""),
        (PRED + r"transformer_cross_attention_layers\.\d+\.fusion_layer\..*", ""),
    ]
    rules += resnet_rules(r"backbone\.", "backbone.")
    enc = PIXEL + r"transformer\.encoder\.layers\.(\d+)\."
    rules += [
        (PIXEL + r"input_proj\.(.*)", r"pixel_decoder.input_proj.\1"),
        (PIXEL + r"transformer\.level_embed", "pixel_decoder.level_embed"),
        (enc + r"(.*)", r"pixel_decoder.encoder.\1.\2"),
        (PIXEL + r"mask_features\.(.*)", r"pixel_decoder.mask_features.\1"),
    ]
    for m in range(1, num_fpn + 1):
        rules += [
            (PIXEL + rf"adapter_{m}\.weight", f"pixel_decoder.lateral_convs.{num_fpn - m}.0.weight"),
            (PIXEL + rf"adapter_{m}\.norm\.(.*)", rf"pixel_decoder.lateral_convs.{num_fpn - m}.1.\1"),
            (PIXEL + rf"layer_{m}\.weight", f"pixel_decoder.output_convs.{num_fpn - m}.0.weight"),
            (PIXEL + rf"layer_{m}\.norm\.(.*)", rf"pixel_decoder.output_convs.{num_fpn - m}.1.\1"),
        ]
    cross = PRED + r"transformer_cross_attention_layers\.(\d+)\."
    rules += [
        (PRED + r"transformer_self_attention_layers\.(\d+)\.self_attn\.(.*)", r"decoder.layers.\1.self_attn.\2"),
        (PRED + r"transformer_self_attention_layers\.(\d+)\.norm\.(.*)", r"decoder.layers.\1.self_norm.\2"),
        (cross + r"(?:multihead_attn|multihead_attn_foreground)\.(.*)", r"decoder.layers.\1.cross_attn.\2"),
        (cross + r"multihead_attn_background\.(.*)", r"decoder.layers.\1.cross_attn_bg.\2"),
        (cross + r"norm\.(.*)", r"decoder.layers.\1.cross_norm.\2"),
        (PRED + r"transformer_ffn_layers\.(\d+)\.(linear\d)\.(.*)", r"decoder.layers.\1.\2.\3"),
        (PRED + r"transformer_ffn_layers\.(\d+)\.norm\.(.*)", r"decoder.layers.\1.ffn_norm.\2"),
        (PRED + r"decoder_norm\.(.*)", r"decoder.norm.\1"),
        (PRED + r"(query_feat|query_embed|level_embed|input_proj|class_embed|mask_embed)\.(.*)", r"decoder.\1.\2"),
    ]
    return rename(state, rules)
