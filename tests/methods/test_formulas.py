"""Every method against its formula computed pixel by pixel on small random outputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mask2anomaly.methods import (
    MSP,
    Energy,
    Entropy,
    Mask2Anomaly,
    Maskomaly,
    MaxLogit,
    RbA,
    ScoreContext,
)
from mask2anomaly.models import MaskTransformerOutput
from mask2anomaly.models.postprocess import semantic_marginal
from tests.methods import naive

OUT = naive.random_output(2, 5, 4, 3, 4)
CTX = ScoreContext.from_masks(OUT, (3, 4))
F_NAIVE = naive.marginal(OUT)
LOGITS = torch.randn(2, 4, 3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
PIXEL_CTX = ScoreContext.from_logits(LOGITS, (3, 4))


def test_marginal_of_context_is_the_sum_over_queries():
    torch.testing.assert_close(CTX.class_scores, F_NAIVE)


@pytest.mark.parametrize(
    ("method", "fn"),
    [
        (MSP(), lambda f: naive.msp(f, normalise=True)),
        (Entropy(), lambda f: naive.entropy(f, normalise=True)),
        (MaxLogit(), lambda f: -max(f)),
        (Energy(), lambda f: naive.energy(f, 1.0)),
        (Energy(temperature=2.0), lambda f: naive.energy(f, 2.0)),
        (RbA(), lambda f: -sum(math.tanh(v) for v in f)),
        (Mask2Anomaly(), lambda f: 1 - max(f)),
    ],
)
def test_mask_model_scores_match_formula(method, fn):
    torch.testing.assert_close(method(CTX), naive.per_pixel(F_NAIVE, fn))


@pytest.mark.parametrize(
    ("method", "fn"),
    [
        (MSP(), lambda f: naive.msp(f, normalise=False)),
        (Entropy(), lambda f: naive.entropy(f, normalise=False)),
        (MaxLogit(), lambda f: -max(f)),
        (Energy(), lambda f: naive.energy(f, 1.0)),
    ],
)
def test_per_pixel_model_scores_match_formula(method, fn):
    torch.testing.assert_close(method(PIXEL_CTX), naive.per_pixel(LOGITS, fn))


@pytest.mark.parametrize("variant", ["code", "poster"])
@pytest.mark.parametrize("eps", [0.0, 0.05])
def test_maskomaly_matches_the_authors_loops(variant, eps):
    out = naive.random_output(2, 6, 3, 3, 4, seed=3)
    out.class_logits[:, :3, 0] += 4  # a few confident inlier queries
    method = Maskomaly(
        variant=variant, t_mask=0.6, t_border=0.3, eps_border=eps, rejected_queries=(5,), anomaly_queries=(4, 1)
    )
    expected = naive.maskomaly(out, variant, 0.6, 0.3, eps, 0.6, (5,), (4, 1))
    torch.testing.assert_close(method(ScoreContext.from_masks(out, (3, 4))), expected)


def test_scores_come_at_image_resolution_with_bilinear_upsampling():
    ctx = ScoreContext.from_masks(OUT, (6, 8))
    up = F.interpolate(OUT.mask_logits, size=(6, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(ctx.mask_probs, up.sigmoid())
    torch.testing.assert_close(ctx.class_scores, semantic_marginal(OUT, (6, 8)))
    assert Mask2Anomaly()(ctx).shape == (2, 6, 8)


def test_flip_tta_averages_the_flipped_back_score():
    g = torch.Generator().manual_seed(5)
    flipped = MaskTransformerOutput(
        OUT.class_logits, torch.randn(OUT.mask_logits.shape, generator=g, dtype=torch.float64)
    )
    ctx = ScoreContext.from_masks(OUT, (3, 4), flipped)
    single = naive.per_pixel(F_NAIVE, lambda f: 1 - max(f))
    flipped_single = naive.per_pixel(naive.marginal(flipped), lambda f: 1 - max(f))
    expected = 0.5 * (single + torch.flip(flipped_single, dims=[2]))
    torch.testing.assert_close(Mask2Anomaly(tta=True)(ctx), expected)


def test_flip_of_a_mirror_image_gives_the_plain_score():
    mirrored = MaskTransformerOutput(OUT.class_logits, OUT.mask_logits.flip(-1))
    ctx = ScoreContext.from_masks(OUT, (3, 4), mirrored)
    torch.testing.assert_close(Mask2Anomaly(tta=True)(ctx), Mask2Anomaly()(ctx))
