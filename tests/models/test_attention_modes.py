"""What each decoder attention mode lets a query see, checked by perturbing the memory and against
attention computed by hand over the allowed pixels."""

from __future__ import annotations

import math

import pytest
import torch

from mask2anomaly.models import MaskTransformer
from mask2anomaly.models.transformer_decoder import DecoderLayer, allowed_where
from tests.models.tiny import tiny_config

DIM, HEADS, QUERIES, PIXELS = 16, 2, 3, 12


def _layer(attention: str, gma_weights: str = "separate") -> DecoderLayer:
    torch.manual_seed(0)
    return DecoderLayer(DIM, HEADS, 32, attention, gma_weights, pre_norm=False).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, QUERIES, DIM, generator=g)
    qpos = torch.randn(1, QUERIES, DIM, generator=g)
    memory = torch.randn(1, PIXELS, DIM, generator=g)
    mpos = torch.randn(1, PIXELS, DIM, generator=g)
    prob = torch.rand(1, 1, QUERIES, PIXELS, generator=g)
    prob[0, 0, 0, :4] = 0.5  # ties: both GMA branches see them
    return x, qpos, memory, mpos, prob


def _manual_attention(attn, query, key, value, allowed):
    """Per-head softmax over the allowed keys only, written out with loops."""
    d = DIM // HEADS
    w_q, w_k, w_v = attn.in_proj_weight.split(DIM)
    b_q, b_k, b_v = attn.in_proj_bias.split(DIM)
    q, k, v = query[0] @ w_q.T + b_q, key[0] @ w_k.T + b_k, value[0] @ w_v.T + b_v
    out = torch.zeros(QUERIES, DIM)
    for i in range(QUERIES):
        keep = [j for j in range(PIXELS) if allowed[i, j]]
        for h in range(HEADS):
            sl = slice(h * d, (h + 1) * d)
            scores = torch.stack([q[i, sl] @ k[j, sl] / math.sqrt(d) for j in keep])
            weights = scores.softmax(0)
            out[i, sl] = sum(w * v[j, sl] for w, j in zip(weights, keep, strict=True))
    return attn.out_proj(out)[None]


def _masks(prob, attention):
    if attention == "cross":
        return (None, None)
    fg = allowed_where(prob < 0.5)
    return (fg, allowed_where(prob > 0.5) if attention == "global_masked" else None)


@pytest.mark.parametrize("attention", ["cross", "masked", "global_masked"])
def test_cross_attention_equals_manual(attention):
    layer = _layer(attention)
    x, qpos, memory, mpos, prob = _inputs()
    masks = _masks(prob, attention)
    with torch.no_grad():
        got = layer._cross(x, qpos, memory, mpos, masks)
        everything = torch.ones(QUERIES, PIXELS, dtype=torch.bool)
        fg = everything if attention == "cross" else prob[0, 0] >= 0.5
        expected = _manual_attention(layer.cross_attn, x + qpos, memory + mpos, memory, fg)
        if attention == "global_masked":
            bg = prob[0, 0] <= 0.5
            expected = expected + _manual_attention(layer.cross_attn_bg, x + qpos, memory + mpos, memory, bg)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _changes(layer, masks, pixel, query=0):
    x, qpos, memory, mpos, _ = _inputs()
    with torch.no_grad():
        before = layer._cross(x, qpos, memory, mpos, masks)[0, query]
        memory = memory.clone()
        memory[0, pixel] += 10.0
        after = layer._cross(x, qpos, memory, mpos, masks)[0, query]
    return not torch.allclose(before, after, atol=1e-6)


def test_masked_attention_ignores_excluded_pixels():
    layer = _layer("masked")
    prob = _inputs()[4]
    masks = _masks(prob, "masked")
    for pixel in range(PIXELS):
        assert _changes(layer, masks, pixel) == bool(prob[0, 0, 0, pixel] >= 0.5)


def test_gma_background_branch_sees_exactly_the_background():
    layer = _layer("global_masked")
    prob = _inputs()[4]
    fg, bg = _masks(prob, "global_masked")
    x, qpos, memory, mpos, _ = _inputs()
    for pixel in range(PIXELS):
        moved = memory.clone()
        moved[0, pixel] += 10.0
        with torch.no_grad():
            before = layer.cross_attn_bg(x + qpos, memory + mpos, memory, bg)[0, 0]
            after = layer.cross_attn_bg(x + qpos, moved + mpos, moved, bg)[0, 0]
        assert (not torch.allclose(before, after, atol=1e-6)) == bool(prob[0, 0, 0, pixel] <= 0.5)
        # The summed output sees every pixel: each is foreground or background.
        assert _changes(layer, (fg, bg), pixel)


def test_cross_attention_sees_all_pixels():
    layer = _layer("cross")
    assert all(_changes(layer, (None, None), pixel) for pixel in range(PIXELS))


def test_shared_gma_weights_use_one_module_twice():
    layer = _layer("global_masked", gma_weights="shared")
    assert layer.cross_attn_bg is None
    x, qpos, memory, mpos, prob = _inputs()
    fg, bg = _masks(prob, "global_masked")
    with torch.no_grad():
        got = layer._cross(x, qpos, memory, mpos, (fg, bg))
        attn = layer.cross_attn
        expected = attn(x + qpos, memory + mpos, memory, fg) + attn(x + qpos, memory + mpos, memory, bg)
    torch.testing.assert_close(got, expected)


def test_fully_blocked_row_attends_everywhere():
    blocked = torch.zeros(1, 1, 2, 5, dtype=torch.bool)
    blocked[0, 0, 0] = True
    blocked[0, 0, 1, 2] = True
    allowed = allowed_where(blocked)
    assert allowed[0, 0, 0].all()
    assert allowed[0, 0, 1].tolist() == [True, True, False, True, True]


@pytest.mark.parametrize("attention", ["cross", "masked", "global_masked"])
def test_whole_model_is_finite_with_empty_and_full_masks(attention):
    torch.manual_seed(0)
    model = MaskTransformer(tiny_config(attention)).eval()
    with torch.no_grad():
        model.decoder.mask_embed.layers[-1].bias.fill_(50.0)  # every mask full -> background empty
        out = model(torch.randn(1, 3, 64, 64), return_aux=True)
    assert torch.isfinite(out.class_logits).all() and torch.isfinite(out.mask_logits).all()
    assert len(out.aux) == model.config.num_decoder_layers


@pytest.mark.parametrize("attention", ["masked", "global_masked", "cross"])
def test_inference_without_intermediate_outputs_matches(attention):
    """Attention masks from reduced mask features equal those from resized mask logits."""
    torch.manual_seed(0)
    model = MaskTransformer(tiny_config(attention)).eval()
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        full = model(x, return_aux=True)
        fast = model(x, return_aux=False)
    assert fast.aux == ()
    torch.testing.assert_close(fast.class_logits, full.class_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.mask_logits, full.mask_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("size", "target"), [((32, 64), (4, 8)), ((32, 64), (8, 16)), ((32, 64), (16, 32)), ((30, 40), (8, 9))]
)
def test_downsample_like_bilinear(size, target):
    from mask2anomaly.models.transformer_decoder import downsample_like_bilinear

    features = torch.randn(2, 3, *size, dtype=torch.float64)
    expected = torch.nn.functional.interpolate(features, size=target, mode="bilinear", align_corners=False)
    torch.testing.assert_close(downsample_like_bilinear(features, target), expected, atol=1e-12, rtol=0)
