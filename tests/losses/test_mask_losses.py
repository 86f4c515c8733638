"""Sigmoid cross-entropy and dice: explicit formulas, pairwise forms, agreement with transformers."""

from __future__ import annotations

import pytest
import torch

from mask2anomaly.losses import dice_loss, pairwise_dice, pairwise_sigmoid_bce, sigmoid_bce_loss
from tests.losses.naive import dice, mean_bce


@pytest.fixture
def points() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4, 13, generator=gen, dtype=torch.float64)
    targets = (torch.rand(4, 13, generator=gen, dtype=torch.float64) > 0.5).double()
    targets[1] = 0.0
    targets[2, :5] = 0.25
    return logits, targets


def test_sigmoid_bce_is_the_mean_over_points_summed_over_masks_over_num_masks(points):
    logits, targets = points
    expected = sum(mean_bce(logits[n].tolist(), targets[n].tolist()) for n in range(4)) / 7.0
    assert sigmoid_bce_loss(logits, targets, 7.0).item() == pytest.approx(expected, rel=1e-12)


def test_dice_is_summed_over_masks_over_num_masks(points):
    logits, targets = points
    expected = sum(dice(logits[n].tolist(), targets[n].tolist()) for n in range(4)) / 3.0
    assert dice_loss(logits, targets, torch.tensor(3.0, dtype=torch.float64)).item() == pytest.approx(
        expected, rel=1e-12
    )


def test_pairwise_costs_equal_the_single_pair_losses(points):
    logits, targets = points
    predictions = torch.cat([logits, -logits[:2]])
    bce_cost = pairwise_sigmoid_bce(predictions, targets)
    dice_cost = pairwise_dice(predictions, targets)
    assert bce_cost.shape == dice_cost.shape == (6, 4)
    for q in range(6):
        for t in range(4):
            assert bce_cost[q, t].item() == pytest.approx(
                mean_bce(predictions[q].tolist(), targets[t].tolist()), rel=1e-12
            )
            assert dice_cost[q, t].item() == pytest.approx(
                dice(predictions[q].tolist(), targets[t].tolist()), rel=1e-12
            )


def test_losses_agree_with_transformers(points):
    hf = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
    logits, targets = points
    torch.testing.assert_close(sigmoid_bce_loss(logits, targets, 5), hf.sigmoid_cross_entropy_loss(logits, targets, 5))
    torch.testing.assert_close(dice_loss(logits, targets, 5), hf.dice_loss(logits, targets, 5))
    torch.testing.assert_close(
        pairwise_sigmoid_bce(logits, targets), hf.pair_wise_sigmoid_cross_entropy_loss(logits, targets)
    )
    torch.testing.assert_close(pairwise_dice(logits, targets), hf.pair_wise_dice_loss(logits, targets))


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\[N, P\]"):
        dice_loss(torch.zeros(2, 3), torch.zeros(2, 4), 1)
