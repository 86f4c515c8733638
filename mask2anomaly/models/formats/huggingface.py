"""Hugging Face ``Mask2FormerForUniversalSegmentation`` checkpoints (``config.json`` plus
``model.safetensors`` or ``pytorch_model.bin``): their configuration and parameter names.

Supported backbones: any ``SwinConfig`` (the released Mask2Former models are Swin) and any
``ResNetConfig`` with ReLU activations and four stages (basic or bottleneck blocks, any depths,
widths and stem, stride placements included). The backbone's final ``swin.layernorm``, which HF saves but the
backbone never applies, is dropped. The query/key/value projections of HF's self-attention are
concatenated into the packed ``in_proj`` layout this package shares with detectron2.
"""

from __future__ import annotations

from typing import Any

import torch

from mask2anomaly.errors import CheckpointError
from mask2anomaly.models.config import BackboneConfig, ModelConfig, ResNetConfig, SwinConfig
from mask2anomaly.models.formats.state_dict import fpn_levels, rename

HF_DEFAULT_NUM_LABELS = 2
"""``PretrainedConfig``'s default: a config with two classes named LABEL_0 / LABEL_1 saves neither
``num_labels`` nor ``id2label``."""


def _pair(value: int | list[int]) -> tuple[int, int]:
    """HF's ``image_size``: one side or ``(H, W)``."""
    return (int(value), int(value)) if isinstance(value, int | float) else (int(value[0]), int(value[1]))


def _backbone_from_hf(backbone: dict[str, Any] | None, source: str) -> BackboneConfig:
    if not backbone:
        raise CheckpointError(f"{source}: config.json has no backbone_config (hub-named backbones are not supported)")
    kind = backbone.get("model_type")
    stages = backbone.get("out_features")
    if stages is not None and list(stages) != ["stage1", "stage2", "stage3", "stage4"]:
        raise CheckpointError(f"{source}: the backbone must output stage1..stage4, got out_features {stages}")
    if kind == "swin":
        if backbone.get("hidden_act", "gelu") != "gelu":
            raise CheckpointError(f"{source}: Swin with hidden_act={backbone['hidden_act']!r} is not supported")
        swin = SwinConfig(
            embed_dim=backbone["embed_dim"],
            depths=tuple(backbone["depths"]),
            num_heads=tuple(backbone["num_heads"]),
            window_size=backbone["window_size"],
            patch_size=backbone.get("patch_size", 4),
            mlp_ratio=float(backbone.get("mlp_ratio", 4.0)),
            qkv_bias=backbone.get("qkv_bias", True),
            drop_path_rate=float(backbone.get("drop_path_rate", 0.1)),
            layer_norm_eps=float(backbone.get("layer_norm_eps", 1e-5)),
            use_absolute_embeddings=backbone.get("use_absolute_embeddings", False),
            image_size=_pair(backbone.get("image_size", 224)),
        )
        return BackboneConfig(name="swin", swin=swin)
    if kind == "resnet":
        if backbone.get("hidden_act", "relu") != "relu":
            raise CheckpointError(f"{source}: ResNet with hidden_act={backbone['hidden_act']!r} is not supported")
        if backbone.get("num_channels", 3) != 3:
            raise CheckpointError(f"{source}: ResNet with {backbone['num_channels']} input channels is not supported")
        try:
            resnet = ResNetConfig(
                layer_type=backbone.get("layer_type", "bottleneck"),
                depths=tuple(backbone.get("depths", (3, 4, 6, 3))),
                hidden_sizes=tuple(backbone.get("hidden_sizes", (256, 512, 1024, 2048))),
                embedding_size=int(backbone.get("embedding_size", 64)),
                downsample_in_first_stage=bool(backbone.get("downsample_in_first_stage", False)),
                downsample_in_bottleneck=bool(backbone.get("downsample_in_bottleneck", False)),
            )
        except ValueError as err:
            raise CheckpointError(f"{source}: unsupported HF ResNet ({err})") from None
        return BackboneConfig(name="resnet", resnet=resnet)
    raise CheckpointError(f"{source}: unsupported backbone model_type {kind!r} (supported: swin, resnet)")


def config_from_hf(hf: dict[str, Any], source: str) -> ModelConfig:
    """Translate a ``Mask2FormerConfig`` dict into a :class:`ModelConfig`."""
    if hf.get("model_type") != "mask2former":
        raise CheckpointError(
            f"{source}: config.json is not a Mask2Former config (model_type={hf.get('model_type')!r})"
        )
    if hf.get("activation_function", "relu") != "relu":
        raise CheckpointError(f"{source}: activation_function {hf['activation_function']!r} is not supported")
    labels = hf.get("id2label") or {}
    num_classes = hf.get("num_labels", len(labels) or HF_DEFAULT_NUM_LABELS)
    names = tuple(labels[str(i)] for i in range(num_classes)) if len(labels) == num_classes else None
    return ModelConfig(
        backbone=_backbone_from_hf(hf.get("backbone_config"), source),
        num_classes=num_classes,
        class_names=names,
        num_queries=hf["num_queries"],
        hidden_dim=hf["hidden_dim"],
        num_heads=hf["num_attention_heads"],
        dim_feedforward=hf["dim_feedforward"],
        num_decoder_layers=hf["decoder_layers"] - 1,
        pre_norm=hf.get("pre_norm", False),
        enforce_input_projection=hf.get("enforce_input_projection", False),
        conv_dim=hf["feature_size"],
        mask_dim=hf["mask_feature_size"],
        encoder_layers=hf["encoder_layers"],
        encoder_feedforward_dim=hf["encoder_feedforward_dim"],
        common_stride=hf.get("common_stride", 4),
        attention="masked",
    )


def _merge_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    prefixes = {k[: -len("q_proj.weight")] for k in state if k.endswith("self_attn.q_proj.weight")}
    for prefix in prefixes:
        for kind in ("weight", "bias"):
            parts = [out.pop(f"{prefix}{p}_proj.{kind}", None) for p in "qkv"]
            if any(p is None for p in parts):
                raise CheckpointError(f"incomplete self-attention projections under {prefix!r}")
            out[f"{prefix}in_proj_{kind}"] = torch.cat(parts, 0)
    return out


def convert_hf_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Rename a HF Mask2Former state dict to this package's parameter names."""
    pixel = r"model\.pixel_level_module\."
    trans = r"model\.transformer_module\."
    num_fpn = fpn_levels(config)
    rules: list[tuple[str, str]] = [
        (r"criterion\..*", ""),
        (r".*num_batches_tracked", ""),
        (pixel + r"encoder\.embedder\.embedder\.convolution\.(.*)", r"backbone.conv1.\1"),
        (pixel + r"encoder\.embedder\.embedder\.normalization\.(.*)", r"backbone.bn1.\1"),
    ]
    rules += [
        (
            pixel + rf"encoder\.encoder\.stages\.{s}\.layers\.(\d+)\.shortcut\.convolution\.(.*)",
            rf"backbone.layer{s + 1}.\1.downsample.0.\2",
        )
        for s in range(4)
    ]
    rules += [
        (
            pixel + rf"encoder\.encoder\.stages\.{s}\.layers\.(\d+)\.shortcut\.normalization\.(.*)",
            rf"backbone.layer{s + 1}.\1.downsample.1.\2",
        )
        for s in range(4)
    ]
    for s in range(4):
        for k in range(3):
            stage = pixel + rf"encoder\.encoder\.stages\.{s}\.layers\.(\d+)\.layer\.{k}"
            rules.append((stage + r"\.convolution\.(.*)", rf"backbone.layer{s + 1}.\1.conv{k + 1}.\2"))
            rules.append((stage + r"\.normalization\.(.*)", rf"backbone.layer{s + 1}.\1.bn{k + 1}.\2"))
    if config.backbone.name == "swin":
        rules.append((pixel + r"encoder\.swin\.layernorm\..*", ""))
        rules.append((pixel + r"encoder\.(.*)", r"backbone.\1"))
    layer = pixel + r"decoder\.encoder\.layers\.(\d+)\."
    rules += [
        (pixel + r"decoder\.level_embed", "pixel_decoder.level_embed"),
        (pixel + r"decoder\.input_projections\.(.*)", r"pixel_decoder.input_proj.\1"),
        (layer + r"self_attn\.(.*)", r"pixel_decoder.encoder.\1.self_attn.\2"),
        (layer + r"self_attn_layer_norm\.(.*)", r"pixel_decoder.encoder.\1.norm1.\2"),
        (layer + r"fc1\.(.*)", r"pixel_decoder.encoder.\1.linear1.\2"),
        (layer + r"fc2\.(.*)", r"pixel_decoder.encoder.\1.linear2.\2"),
        (layer + r"final_layer_norm\.(.*)", r"pixel_decoder.encoder.\1.norm2.\2"),
        (pixel + r"decoder\.mask_projection\.(.*)", r"pixel_decoder.mask_features.\1"),
    ]
    for m in range(1, num_fpn + 1):
        rules.append((pixel + rf"decoder\.adapter_{m}\.(.*)", rf"pixel_decoder.lateral_convs.{num_fpn - m}.\1"))
        rules.append((pixel + rf"decoder\.layer_{m}\.(.*)", rf"pixel_decoder.output_convs.{num_fpn - m}.\1"))
    dec = trans + r"decoder\.layers\.(\d+)\."
    rules += [
        (trans + r"queries_embedder\.(.*)", r"decoder.query_embed.\1"),
        (trans + r"queries_features\.(.*)", r"decoder.query_feat.\1"),
        (trans + r"level_embed\.(.*)", r"decoder.level_embed.\1"),
        (trans + r"input_projections\.(.*)", r"decoder.input_proj.\1"),
        (dec + r"self_attn\.(.*)", r"decoder.layers.\1.self_attn.\2"),
        (dec + r"self_attn_layer_norm\.(.*)", r"decoder.layers.\1.self_norm.\2"),
        (dec + r"cross_attn\.(.*)", r"decoder.layers.\1.cross_attn.\2"),
        (dec + r"cross_attn_layer_norm\.(.*)", r"decoder.layers.\1.cross_norm.\2"),
        (dec + r"fc1\.(.*)", r"decoder.layers.\1.linear1.\2"),
        (dec + r"fc2\.(.*)", r"decoder.layers.\1.linear2.\2"),
        (dec + r"final_layer_norm\.(.*)", r"decoder.layers.\1.ffn_norm.\2"),
        (trans + r"decoder\.layernorm\.(.*)", r"decoder.norm.\1"),
        (trans + r"decoder\.mask_predictor\.mask_embedder\.(\d+)\.0\.(.*)", r"decoder.mask_embed.layers.\1.\2"),
        (r"class_predictor\.(.*)", r"decoder.class_embed.\1"),
    ]
    return _merge_qkv(rename(state, rules))
