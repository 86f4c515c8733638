"""Official detectron2 checkpoints (Mask2Former and Mask2Anomaly GMA, R50) load and reproduce outputs.

The official key names are generated here from the architecture with a table written for this test,
independently of the package's renaming rules.
"""

from __future__ import annotations

import re

import pytest
import torch

from mask2anomaly import load_model
from mask2anomaly.models import MaskTransformer
from tests.models.tiny import tiny_config

RESNET50_BLOCKS = (3, 4, 6, 3)


def official_name(ours: str) -> str:
    """Map one of our parameter names to the official Mask2Former / Mask2Anomaly name."""
    table = [
        (r"backbone\.conv1\.weight", "backbone.stem.conv1.weight"),
        (r"backbone\.bn1\.(\w+)", r"backbone.stem.conv1.norm.\1"),
        (
            r"backbone\.layer(\d)\.(\d+)\.conv(\d)\.weight",
            lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight",
        ),
        (
            r"backbone\.layer(\d)\.(\d+)\.bn(\d)\.(\w+)",
            lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}",
        ),
        (
            r"backbone\.layer(\d)\.(\d+)\.downsample\.0\.weight",
            lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.shortcut.weight",
        ),
        (
            r"backbone\.layer(\d)\.(\d+)\.downsample\.1\.(\w+)",
            lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}",
        ),
        (r"pixel_decoder\.input_proj\.(.*)", r"sem_seg_head.pixel_decoder.input_proj.\1"),
        (r"pixel_decoder\.level_embed", "sem_seg_head.pixel_decoder.transformer.level_embed"),
        (r"pixel_decoder\.encoder\.(\d+)\.(.*)", r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.\2"),
        (r"pixel_decoder\.lateral_convs\.0\.0\.weight", "sem_seg_head.pixel_decoder.adapter_1.weight"),
        (r"pixel_decoder\.lateral_convs\.0\.1\.(\w+)", r"sem_seg_head.pixel_decoder.adapter_1.norm.\1"),
        (r"pixel_decoder\.output_convs\.0\.0\.weight", "sem_seg_head.pixel_decoder.layer_1.weight"),
        (r"pixel_decoder\.output_convs\.0\.1\.(\w+)", r"sem_seg_head.pixel_decoder.layer_1.norm.\1"),
        (r"pixel_decoder\.mask_features\.(\w+)", r"sem_seg_head.pixel_decoder.mask_features.\1"),
        (
            r"decoder\.layers\.(\d+)\.self_attn\.(.*)",
            r"sem_seg_head.predictor.transformer_self_attention_layers.\1.self_attn.\2",
        ),
        (
            r"decoder\.layers\.(\d+)\.self_norm\.(\w+)",
            r"sem_seg_head.predictor.transformer_self_attention_layers.\1.norm.\2",
        ),
        (
            r"decoder\.layers\.(\d+)\.cross_attn_bg\.(.*)",
            r"sem_seg_head.predictor.transformer_cross_attention_layers.\1.multihead_attn_background.\2",
        ),
        (
            r"decoder\.layers\.(\d+)\.cross_attn\.(.*)",
            r"sem_seg_head.predictor.transformer_cross_attention_layers.\1.FOREGROUND.\2",
        ),
        (
            r"decoder\.layers\.(\d+)\.cross_norm\.(\w+)",
            r"sem_seg_head.predictor.transformer_cross_attention_layers.\1.norm.\2",
        ),
        (r"decoder\.layers\.(\d+)\.(linear\d)\.(\w+)", r"sem_seg_head.predictor.transformer_ffn_layers.\1.\2.\3"),
        (r"decoder\.layers\.(\d+)\.ffn_norm\.(\w+)", r"sem_seg_head.predictor.transformer_ffn_layers.\1.norm.\2"),
        (r"decoder\.norm\.(\w+)", r"sem_seg_head.predictor.decoder_norm.\1"),
        (r"decoder\.(query_feat|query_embed|level_embed|class_embed)\.(\w+)", r"sem_seg_head.predictor.\1.\2"),
        (r"decoder\.mask_embed\.layers\.(\d)\.(\w+)", r"sem_seg_head.predictor.mask_embed.layers.\1.\2"),
    ]
    for pattern, repl in table:
        m = re.fullmatch(pattern, ours)
        if m:
            return repl(m) if callable(repl) else m.expand(repl)
    raise AssertionError(f"no official name for {ours}")


def official_state_dict(model: MaskTransformer) -> dict[str, torch.Tensor]:
    gma = model.config.attention == "global_masked"
    state = {}
    for key, value in model.state_dict().items():
        name = official_name(key).replace("FOREGROUND", "multihead_attn_foreground" if gma else "multihead_attn")
        state[name] = value.clone()
    if gma:
        for i in range(model.config.num_decoder_layers):
            prefix = f"sem_seg_head.predictor.transformer_cross_attention_layers.{i}.fusion_layer"
            state[f"{prefix}.weight"] = torch.randn(100, 200, 1, 1)
            state[f"{prefix}.bias"] = torch.randn(100)
    return state


def _random_model(attention: str) -> MaskTransformer:
    torch.manual_seed(0)
    model = MaskTransformer(tiny_config(attention, backbone="resnet50", num_classes=19, num_heads=8)).eval()
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif name.endswith(("running_mean", "bias")):
                buffer.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("attention", ["global_masked", "masked"])
def test_official_checkpoint_loads_and_reproduces(attention, tmp_path):
    source = _random_model(attention)
    state = official_state_dict(source)
    blocks = {int(m[1]) for k in state if (m := re.match(r"backbone\.res4\.(\d+)\.", k))}
    assert len(blocks) == RESNET50_BLOCKS[2]
    assert any("fusion_layer" in k for k in state) == (attention == "global_masked")
    path = tmp_path / "model_final.pth"
    torch.save({"model": state, "iteration": 90000}, path)

    loaded = load_model(path)
    assert loaded.config.attention == attention
    assert loaded.config.backbone.name == "resnet50"
    assert loaded.config.num_classes == 19 and loaded.config.num_queries == 8
    assert set(loaded.state_dict()) == set(source.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, got = source(x), loaded(x)
    torch.testing.assert_close(got.class_logits, expected.class_logits, atol=0, rtol=0)
    torch.testing.assert_close(got.mask_logits, expected.mask_logits, atol=0, rtol=0)


def test_detectron2_backbone_only_file(tmp_path):
    """A detectron2-layout R50 weight file initialises the backbone (``backbone.pretrained``)."""
    from mask2anomaly.models import BackboneConfig

    source = _random_model("masked")
    backbone_state = {
        official_name(k).removeprefix("backbone."): v
        for k, v in source.state_dict().items()
        if k.startswith("backbone.")
    }
    path = tmp_path / "R-50.pth"
    torch.save({"model": backbone_state}, path)
    config = tiny_config("masked", backbone="resnet50")
    model = MaskTransformer(
        type(config)(**{**config.__dict__, "backbone": BackboneConfig("resnet50", pretrained=str(path))})
    )
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value, atol=0, rtol=0)
