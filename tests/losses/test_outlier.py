"""Outlier losses: scores and losses by formula, the effect of each contrastive variant, deep sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mask2anomaly.errors import UserError
from mask2anomaly.losses import (
    LossOutput,
    OutlierLossConfig,
    bce_outlier_loss,
    mask_contrastive_loss,
    negative_likelihood,
    outlier_loss,
    rba_outlier_loss,
    rba_score,
)
from mask2anomaly.models.output import MaskPrediction, MaskTransformerOutput
from tests.losses.naive import marginal, resize_align_corners


def random_prediction(seed: int, batch: int = 2, queries: int = 4, classes: int = 3, size=(3, 4)):
    gen = torch.Generator().manual_seed(seed)
    class_logits = 2 * torch.randn(batch, queries, classes + 1, generator=gen, dtype=torch.float64)
    mask_logits = 2 * torch.randn(batch, queries, *size, generator=gen, dtype=torch.float64)
    return class_logits, mask_logits


def random_labels(seed: int, shape=(2, 6, 8)):
    gen = torch.Generator().manual_seed(seed)
    outlier = torch.rand(shape, generator=gen) < 0.3
    ignore = torch.rand(shape, generator=gen) < 0.2
    score = -torch.rand(shape, generator=gen, dtype=torch.float64)
    return score, outlier, ignore


def test_negative_likelihood_is_minus_the_max_class_marginal_upsampled_with_aligned_corners():
    class_logits, mask_logits = random_prediction(0)
    f = marginal(class_logits.numpy(), mask_logits.numpy())
    stride4 = -f.max(1)
    np.testing.assert_allclose(negative_likelihood(class_logits, mask_logits).numpy(), stride4, rtol=1e-12)
    upsampled = negative_likelihood(class_logits, mask_logits, size=(7, 9)).numpy()
    for b in range(2):
        np.testing.assert_allclose(upsampled[b], resize_align_corners(stride4[b], 7, 9), rtol=1e-12, atol=1e-12)


def test_rba_score_is_minus_the_sum_of_tanh_marginals():
    class_logits, mask_logits = random_prediction(1)
    f = marginal(class_logits.numpy(), mask_logits.numpy())
    np.testing.assert_allclose(rba_score(class_logits, mask_logits).numpy(), -np.tanh(f).sum(1), rtol=1e-12)
    upsampled = rba_score(class_logits, mask_logits, size=(5, 5)).numpy()
    np.testing.assert_allclose(upsampled[1], resize_align_corners(-np.tanh(f[1]).sum(0), 5, 5), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("use_ignore", [False, True])
def test_as_published_contrastive_loss_is_the_official_formula(use_ignore):
    score, outlier, ignore = random_labels(2)
    keep = ~ignore.numpy() if use_ignore else np.ones(score.shape, bool)
    s, out = score.numpy(), outlier.numpy()
    s_in, s_out = s[~out & keep], s[out & keep]
    expected = 0.5 * (np.mean(s_in**2) + np.mean(np.maximum(0.6 - s_out, 0) ** 2))
    value = mask_contrastive_loss(score, outlier, ignore if use_ignore else None, margin=0.6)
    assert value.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("use_ignore", [False, True])
def test_corrected_contrastive_loss_is_eq_11_on_the_anomaly_score(use_ignore):
    score, outlier, ignore = random_labels(3)
    keep = ~ignore.numpy() if use_ignore else np.ones(score.shape, bool)
    anomaly, out = 1 + score.numpy(), outlier.numpy()
    a_in, a_out = anomaly[~out & keep], anomaly[out & keep]
    expected = 0.5 * (np.mean(a_in**2) + np.mean(np.maximum(0.75 - a_out, 0) ** 2))
    value = mask_contrastive_loss(score, outlier, ignore if use_ignore else None, variant="corrected")
    assert value.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("variant", ["as_published", "corrected"])
def test_without_outlier_pixels_only_the_inlier_term_remains(variant):
    score, _, _ = random_labels(4)
    inlier = score.numpy() if variant == "as_published" else 1 + score.numpy()
    value = mask_contrastive_loss(score, torch.zeros(score.shape, dtype=torch.bool), variant=variant)
    assert value.item() == pytest.approx(0.5 * np.mean(inlier**2), rel=1e-12)


def test_only_outlier_pixels_give_just_the_outlier_term():
    score, _, _ = random_labels(5)
    value = mask_contrastive_loss(score, torch.ones(score.shape, dtype=torch.bool), margin=0.5)
    assert value.item() == pytest.approx(0.5 * np.mean((0.5 - score.numpy()) ** 2), rel=1e-12)


def one_pixel_images(seed: int):
    """Twelve 1x1 images with one known class and two queries: every pixel has its own logits, so a
    step on one pixel's loss changes that pixel only, and there is no kink of the max over classes."""
    gen = torch.Generator().manual_seed(seed)
    class_logits = torch.randn(12, 2, 2, generator=gen, dtype=torch.float64).requires_grad_()
    mask_logits = torch.randn(12, 2, 1, 1, generator=gen, dtype=torch.float64).requires_grad_()
    outlier = torch.zeros(12, 1, 1, dtype=torch.bool)
    outlier[::3] = True
    return class_logits, mask_logits, outlier


def anomaly_before_and_after_one_step(variant: str, seed: int, lr: float = 0.1):
    """Anomaly score ``1 - max_c f`` before and after one SGD step on the contrastive loss.

    Returns the scores of the pixels that start strictly between the two targets (``0 < f < m``,
    a pixel may start below 0 since several queries can vote for one class), and their outlier flags.
    """
    class_logits, mask_logits, outlier = one_pixel_images(seed)
    before = 1 + negative_likelihood(class_logits, mask_logits).detach()
    mask_contrastive_loss(negative_likelihood(class_logits, mask_logits), outlier, variant=variant).backward()
    with torch.no_grad():
        class_logits -= lr * class_logits.grad
        mask_logits -= lr * mask_logits.grad
    after = 1 + negative_likelihood(class_logits, mask_logits).detach()
    between = (before > 0) & (before < 0.75)
    assert (between & outlier).sum() >= 2 and (between & ~outlier).sum() >= 5
    return before[between], after[between], outlier[between]


@pytest.mark.parametrize("seed", range(3))
def test_a_corrected_step_lowers_every_inlier_anomaly_score_and_raises_every_outlier_one(seed):
    before, after, outlier = anomaly_before_and_after_one_step("corrected", seed)
    assert (after[~outlier] < before[~outlier]).all()
    assert (after[outlier] > before[outlier]).all()


@pytest.mark.parametrize("seed", range(3))
def test_an_as_published_step_raises_the_anomaly_score_of_inliers_as_well(seed):
    """Documents the published behaviour: its inlier term ``l_N^2`` pulls the inlier likelihood to 0."""
    before, after, outlier = anomaly_before_and_after_one_step("as_published", seed)
    assert (after[~outlier] > before[~outlier]).all()
    assert (after[outlier] > before[outlier]).all()


def minimise(variant: str, seed: int, steps: int = 100):
    """Anomaly scores after Adam on one 6x6 image whose pixels share the class logits of 3 queries."""
    class_logits, mask_logits = random_prediction(seed, batch=1, queries=3, classes=2, size=(6, 6))
    class_logits.requires_grad_()
    mask_logits.requires_grad_()
    outlier = torch.zeros(1, 6, 6, dtype=torch.bool)
    outlier[:, 1:4, 2:5] = True
    optimiser = torch.optim.Adam([class_logits, mask_logits], lr=0.1)
    for _ in range(steps):
        optimiser.zero_grad()
        mask_contrastive_loss(negative_likelihood(class_logits, mask_logits), outlier, variant=variant).backward()
        optimiser.step()
    anomaly = 1 + negative_likelihood(class_logits, mask_logits).detach()
    return anomaly[~outlier], anomaly[outlier]


def test_minimising_corrected_separates_inliers_from_outliers_by_the_margin():
    inlier, outlier = minimise("corrected", seed=0)
    assert inlier.abs().max() < 0.02
    assert outlier.min() > 0.75 - 0.02


def test_minimising_as_published_makes_the_whole_image_look_anomalous():
    """Documents the published behaviour: at its minimum inliers score like outliers (likelihood 0)."""
    inlier, outlier = minimise("as_published", seed=0)
    assert inlier.min() > 0.95
    assert outlier.min() > 0.95


def test_corrected_margin_stops_at_one_minus_m_while_the_published_hinge_never_clips():
    score = torch.tensor([[[-0.2, -0.1], [-0.9, -0.5]]], dtype=torch.float64, requires_grad=True)
    outlier = torch.tensor([[[True, True], [False, False]]])
    mask_contrastive_loss(score, outlier, variant="corrected").backward()
    assert score.grad[0, 0].tolist() == [0.0, 0.0]
    score.grad = None
    mask_contrastive_loss(score, outlier, variant="as_published").backward()
    # d/ds 0.5 * mean((m - s)^2) over the two outlier pixels = -(m - s) / 2, never zero since s <= 0 < m.
    assert score.grad[0, 0].tolist() == pytest.approx([-(0.75 + 0.2) / 2, -(0.75 + 0.1) / 2])


@pytest.mark.parametrize("use_ignore", [False, True])
def test_bce_loss_treats_the_negative_likelihood_as_a_logit(use_ignore):
    score, outlier, ignore = random_labels(6)
    keep = ~ignore.numpy() if use_ignore else np.ones(score.shape, bool)
    s, out = score.numpy(), outlier.numpy()
    expected = 0.5 * (np.mean(np.log1p(np.exp(s[~out & keep]))) + np.mean(np.log1p(np.exp(-s[out & keep]))))
    value = bce_outlier_loss(score, outlier, ignore if use_ignore else None)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    no_outliers = bce_outlier_loss(score, torch.zeros_like(outlier))
    assert no_outliers.item() == pytest.approx(0.5 * np.mean(np.log1p(np.exp(s))), rel=1e-12)


def test_rba_loss_is_a_squared_hinge_on_outlier_pixels_only():
    gen = torch.Generator().manual_seed(7)
    score = -6 * torch.rand(2, 5, 5, generator=gen, dtype=torch.float64)
    score[0, 0, 0] = 6.0
    outlier = torch.rand(2, 5, 5, generator=gen) < 0.4
    outlier[0, 0, 0] = True
    s_out = score.numpy()[outlier.numpy()]
    expected = 0.5 * np.mean(np.maximum(5.0 - s_out, 0) ** 2)
    assert rba_outlier_loss(score, outlier).item() == pytest.approx(expected, rel=1e-12)
    leaf = score.clone().requires_grad_()
    zero = rba_outlier_loss(leaf, torch.zeros_like(outlier))
    zero.backward()
    assert zero.item() == 0.0 and leaf.grad.abs().sum() == 0


@pytest.mark.parametrize(
    ("config", "loss"),
    [
        (OutlierLossConfig(weight=0.5), lambda c, m, o: mask_contrastive_loss(negative_likelihood(c, m, (6, 8)), o)),
        (
            OutlierLossConfig(variant="corrected", margin=0.5),
            lambda c, m, o: mask_contrastive_loss(
                negative_likelihood(c, m, (6, 8)), o, margin=0.5, variant="corrected"
            ),
        ),
        (
            OutlierLossConfig(kind="bce", weight=2.0),
            lambda c, m, o: bce_outlier_loss(negative_likelihood(c, m, (6, 8)), o),
        ),
        (OutlierLossConfig(kind="rba"), lambda c, m, o: rba_outlier_loss(rba_score(c, m, (6, 8)), o, margin=5.0)),
    ],
)
def test_outlier_loss_sums_the_final_and_every_intermediate_prediction(config, loss):
    layers = [random_prediction(seed) for seed in (10, 11, 12)]
    output = MaskTransformerOutput(*layers[0], aux=tuple(MaskPrediction(*layer) for layer in layers[1:]))
    _, outlier, _ = random_labels(13)
    result = outlier_loss(output, outlier, config)
    assert isinstance(result, LossOutput)
    assert list(result.terms) == ["loss_outlier", "loss_outlier_0", "loss_outlier_1"]
    for name, layer in zip(result.terms, layers, strict=True):
        torch.testing.assert_close(result.terms[name], config.resolved_weight * loss(*layer, outlier))
    torch.testing.assert_close(result.total, sum(result.terms.values()))


def test_config_defaults_and_validation():
    assert OutlierLossConfig().resolved_margin == 0.75
    assert OutlierLossConfig(kind="rba").resolved_margin == 5.0
    assert OutlierLossConfig(kind="bce").resolved_margin is None
    assert OutlierLossConfig(margin=1.0).resolved_margin == 1.0
    with pytest.raises(UserError, match="kind"):
        OutlierLossConfig(kind="energy")
    with pytest.raises(UserError, match="applies to kind 'contrastive' only"):
        OutlierLossConfig(kind="rba", variant="corrected")
    with pytest.raises(UserError, match="no margin"):
        OutlierLossConfig(kind="bce", margin=0.5)
    with pytest.raises(UserError, match="variant"):
        mask_contrastive_loss(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool), variant="fixed")
    with pytest.raises(ValueError, match="same shape"):
        bce_outlier_loss(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2, dtype=torch.bool))


def test_loss_outputs_merge_and_refuse_duplicate_terms():
    first = LossOutput(torch.tensor(1.0), {"loss_ce": torch.tensor(1.0)})
    second = LossOutput(torch.tensor(2.5), {"loss_outlier": torch.tensor(2.5)})
    merged = first.merge(second)
    assert merged.total.item() == 3.5 and list(merged.terms) == ["loss_ce", "loss_outlier"]
    with pytest.raises(ValueError, match="loss_ce"):
        first.merge(first)


def test_half_precision_logits_are_scored_in_float32():
    class_logits, mask_logits = random_prediction(14)
    score = negative_likelihood(class_logits.half(), mask_logits.half(), size=(6, 8))
    assert score.dtype == torch.float32
    torch.testing.assert_close(
        score, negative_likelihood(class_logits.half().float(), mask_logits.half().float(), (6, 8))
    )
