"""Our model loaded from a Hugging Face Mask2Former checkpoint gives HF's outputs: Swin and ResNet
backbones of odd configurations (basic and bottleneck blocks, odd depths and widths, both stride
placements), with the mask head scaled so that masked attention masks most pixels (a model that
ignored the attention mask would differ by far more than the 1e-4 allowed)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

transformers = pytest.importorskip("transformers")

from mask2anomaly import load_model  # noqa: E402

STAGES = ["stage1", "stage2", "stage3", "stage4"]


def _swin(**kw):
    return transformers.SwinConfig(out_features=STAGES, **kw)


CONFIGS = {
    "swin_q12_l3_h64_k7": dict(
        backbone_config=_swin(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], window_size=4),
        num_queries=12,
        decoder_layers=4,
        num_labels=7,
        hidden_dim=64,
        feature_size=64,
        mask_feature_size=64,
        encoder_layers=2,
        dim_feedforward=128,
        encoder_feedforward_dim=128,
        num_attention_heads=4,
    ),
    "swin_q20_l6_h96_k3_projected": dict(
        backbone_config=_swin(embed_dim=48, depths=[2, 2, 2, 2], num_heads=[2, 4, 8, 16], window_size=7),
        num_queries=20,
        decoder_layers=7,
        num_labels=3,
        hidden_dim=96,
        feature_size=64,
        mask_feature_size=32,
        encoder_layers=1,
        dim_feedforward=64,
        encoder_feedforward_dim=64,
        num_attention_heads=4,
    ),
    "swin_q8_l9_h32_k19_prenorm": dict(
        backbone_config=_swin(embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=3),
        num_queries=8,
        decoder_layers=10,
        num_labels=19,
        hidden_dim=32,
        feature_size=32,
        mask_feature_size=32,
        encoder_layers=1,
        dim_feedforward=64,
        encoder_feedforward_dim=32,
        num_attention_heads=2,
        pre_norm=True,
        enforce_input_projection=True,
    ),
    "swin_q6_l2_h48_k4_patch2_mlp2_nobias_abs": dict(
        backbone_config=_swin(
            embed_dim=24,
            depths=[1, 2, 1, 1],
            num_heads=[1, 2, 3, 4],
            window_size=5,
            patch_size=2,
            mlp_ratio=2.0,
            qkv_bias=False,
            use_absolute_embeddings=True,
            image_size=96,
        ),
        num_queries=6,
        decoder_layers=3,
        num_labels=4,
        hidden_dim=48,
        feature_size=64,
        mask_feature_size=32,
        encoder_layers=1,
        dim_feedforward=96,
        encoder_feedforward_dim=64,
        num_attention_heads=4,
    ),
    "resnet_bottleneck_odd_q9_k6": dict(
        backbone_config=transformers.ResNetConfig(
            depths=[1, 2, 1, 1],
            hidden_sizes=[32, 48, 64, 96],
            embedding_size=16,
            layer_type="bottleneck",
            out_features=STAGES,
        ),
        num_queries=9,
        decoder_layers=3,
        num_labels=6,
        hidden_dim=32,
        feature_size=32,
        mask_feature_size=32,
        encoder_layers=1,
        dim_feedforward=64,
        encoder_feedforward_dim=64,
        num_attention_heads=4,
    ),
    "resnet_bottleneck_stride_in_1x1_q7_k3": dict(
        backbone_config=transformers.ResNetConfig(
            depths=[2, 1, 1, 2],
            hidden_sizes=[16, 36, 64, 128],
            embedding_size=24,
            layer_type="bottleneck",
            downsample_in_bottleneck=True,
            out_features=STAGES,
        ),
        num_queries=7,
        decoder_layers=4,
        num_labels=3,
        hidden_dim=32,
        feature_size=32,
        mask_feature_size=32,
        encoder_layers=2,
        dim_feedforward=64,
        encoder_feedforward_dim=32,
        num_attention_heads=2,
    ),
    "resnet_basic_odd_q5_k8": dict(
        backbone_config=transformers.ResNetConfig(
            depths=[1, 3, 1, 2],
            hidden_sizes=[24, 40, 56, 72],
            embedding_size=32,
            layer_type="basic",
            out_features=STAGES,
        ),
        num_queries=5,
        decoder_layers=2,
        num_labels=8,
        hidden_dim=32,
        feature_size=32,
        mask_feature_size=32,
        encoder_layers=1,
        dim_feedforward=32,
        encoder_feedforward_dim=32,
        num_attention_heads=4,
    ),
    "resnet_basic_first_stage_downsample_q4_k2": dict(
        backbone_config=transformers.ResNetConfig(
            depths=[1, 1, 2, 1],
            hidden_sizes=[16, 32, 48, 64],
            embedding_size=8,
            layer_type="basic",
            downsample_in_first_stage=True,
            out_features=STAGES,
        ),
        num_queries=4,
        decoder_layers=2,
        num_labels=2,
        hidden_dim=32,
        feature_size=32,
        mask_feature_size=32,
        encoder_layers=1,
        dim_feedforward=32,
        encoder_feedforward_dim=32,
        num_attention_heads=2,
    ),
    "resnet18_q10_l2_h64_k5": dict(
        backbone_config=transformers.ResNetConfig(
            depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic", out_features=STAGES
        ),
        num_queries=10,
        decoder_layers=3,
        num_labels=5,
        hidden_dim=64,
        feature_size=64,
        mask_feature_size=64,
        encoder_layers=1,
        dim_feedforward=128,
        encoder_feedforward_dim=128,
        num_attention_heads=4,
    ),
}


INPUT_SIZES = {"swin_q6_l2_h48_k4_patch2_mlp2_nobias_abs": (96, 96)}
"""HF adds absolute position embeddings only to inputs of the size they were made for."""

MASK_SCALE = 8.0
"""Factor on the mask head's last layer: the masks' logits spread far from 0, so the attention mask
(``sigmoid < 0.5`` hides a pixel) hides many pixels, differently for every query."""


def _hf_model(name: str, tmp_path, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.Mask2FormerConfig(**CONFIGS[name])
    model = transformers.Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():
        parameters = dict(model.named_parameters())
        last = "model.transformer_module.decoder.mask_predictor.mask_embedder.2.0"
        parameters[f"{last}.weight"].mul_(MASK_SCALE)
    model.save_pretrained(tmp_path)
    return model


def _masked_fraction(hf, x) -> float:
    """Share of (query, pixel) pairs the first decoder layer's attention mask hides."""
    with torch.no_grad():
        out = hf(x, output_auxiliary_logits=True)
    first = out.auxiliary_logits[0]["masks_queries_logits"]
    return float((first.sigmoid() < 0.5).float().mean())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_outputs_match_hf(name, tmp_path):
    hf = _hf_model(name, tmp_path)
    ours = load_model(tmp_path)
    assert ours.config.num_queries == CONFIGS[name]["num_queries"]
    assert ours.config.num_decoder_layers == CONFIGS[name]["decoder_layers"] - 1
    height, width = INPUT_SIZES.get(name, (96, 160))
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    assert 0.2 < _masked_fraction(hf, x) < 0.95
    with torch.no_grad():
        expected = hf(x, output_auxiliary_logits=True)
        got = ours(x, return_aux=True)
    assert got.class_logits.shape == expected.class_queries_logits.shape
    stride = 2 if "patch2" in name else 8 if "first_stage_downsample" in name else 4
    expected_shape = (2, ours.config.num_queries, height // stride, width // stride)
    assert got.mask_logits.shape == expected.masks_queries_logits.shape == expected_shape
    torch.testing.assert_close(got.class_logits, expected.class_queries_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.mask_logits, expected.masks_queries_logits, atol=1e-4, rtol=0)
    assert len(got.aux) == len(expected.auxiliary_logits)
    for ours_aux, hf_aux in zip(got.aux, expected.auxiliary_logits, strict=True):
        torch.testing.assert_close(ours_aux.class_logits, hf_aux["class_queries_logits"], atol=1e-4, rtol=0)
        torch.testing.assert_close(ours_aux.mask_logits, hf_aux["masks_queries_logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["resnet_bottleneck_odd_q9_k6", "swin_q12_l3_h64_k7"])
def test_the_tolerance_catches_a_missing_attention_mask(name, tmp_path):
    """The same weights with plain cross-attention (no mask) are far from HF's outputs."""
    hf = _hf_model(name, tmp_path)
    ours = load_model(tmp_path)
    unmasked = type(ours)(dataclasses.replace(ours.config, attention="cross"), load_pretrained=False).eval()
    unmasked.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(x).masks_queries_logits
        assert (unmasked(x).mask_logits - expected).abs().max() > 1e-2


def test_pytorch_model_bin_directory(tmp_path):
    hf = _hf_model("resnet18_q10_l2_h64_k5", tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ours = load_model(tmp_path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).mask_logits, hf(x).masks_queries_logits, atol=1e-4, rtol=0)


def test_class_names_come_from_id2label(tmp_path):
    config = dict(CONFIGS["resnet18_q10_l2_h64_k5"])
    config["id2label"] = {i: f"class{i}" for i in range(5)}
    transformers.Mask2FormerForUniversalSegmentation(transformers.Mask2FormerConfig(**config)).save_pretrained(tmp_path)
    assert load_model(tmp_path).config.class_names == tuple(f"class{i}" for i in range(5))


def test_preprocess_matches_hf_image_processor():
    from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

    rng = torch.Generator().manual_seed(3)
    images = [
        torch.randint(0, 256, (50, 70, 3), generator=rng, dtype=torch.uint8).numpy(),
        torch.randint(0, 256, (64, 33, 3), generator=rng, dtype=torch.uint8).numpy(),
    ]
    processor = Mask2FormerImageProcessorPil(do_resize=False)
    expected = processor(images=images, return_tensors="pt")["pixel_values"]
    from mask2anomaly.models.preprocess import normalize_images

    got, sizes = normalize_images(images)
    assert sizes == [(50, 70), (64, 33)]
    # HF pads to the batch's largest size; we continue to a multiple of 32 (Mask2Former's size
    # divisibility) with the same zero fill.
    assert expected.shape == (2, 3, 64, 70) and got.shape == (2, 3, 64, 96)
    torch.testing.assert_close(got[..., :70], expected, atol=1e-5, rtol=0)
    assert not got[..., 70:].any()
