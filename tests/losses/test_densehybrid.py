"""DenseHybrid's training terms against their formulas on small tensors (paper 001; the authors'
``semseg_negatives_joint_th.py``): L_x the mean log-density of the negatives, L_d the two-way
cross-entropy of every kept pixel, weighted beta and 10 beta."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mask2anomaly.errors import UserError
from mask2anomaly.losses import OutlierLossConfig, outlier_loss
from mask2anomaly.losses.densehybrid import likelihood_term, posterior_term
from mask2anomaly.models import MaskTransformerOutput


def test_likelihood_term_is_the_mean_over_negatives_only():
    log_p = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], requires_grad=True)
    negatives = torch.tensor([[[True, False], [True, True]]])
    ignore = torch.tensor([[[False, False], [False, True]]])
    value = likelihood_term(log_p, negatives, ignore)
    assert value.item() == pytest.approx((1.0 + 3.0) / 2)
    value.backward()
    assert log_p.grad.tolist() == [[[0.5, 0.0], [0.5, 0.0]]]
    empty = likelihood_term(log_p, torch.zeros_like(negatives), None)
    assert empty.item() == 0.0 and empty.requires_grad


def test_posterior_term_is_two_way_cross_entropy_over_kept_pixels():
    u = torch.tensor([[[[2.0, -1.0]], [[0.5, 1.5]]]])  # [1, 2, 1, 2]: inlier and outlier logits
    negatives = torch.tensor([[[False, True]]])
    by_hand = [-(2.0 - math.log(math.exp(2.0) + math.exp(0.5))), -(1.5 - math.log(math.exp(-1.0) + math.exp(1.5)))]
    assert posterior_term(u, negatives, None).item() == pytest.approx(np.mean(by_hand))
    assert posterior_term(u, negatives, torch.tensor([[[True, False]]])).item() == pytest.approx(by_hand[1])


def test_mask_model_terms_use_the_marginal_mass_and_the_head():
    g = torch.Generator().manual_seed(0)
    classes = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    masks = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64) * 3
    dataset = torch.randn(2, 2, 3, 4, generator=g, dtype=torch.float64)
    negatives = torch.zeros(2, 6, 8, dtype=torch.bool)
    negatives[0, 1:4, 2:6] = True
    negatives[1, 4:, :3] = True
    padding = torch.zeros_like(negatives)
    padding[1, :, 7:] = True
    result = outlier_loss(
        MaskTransformerOutput(classes, masks, dataset_logits=dataset),
        negatives,
        OutlierLossConfig("densehybrid"),
        padding,
    )
    mass = torch.einsum("bqk,bqhw->bhw", classes.softmax(-1)[..., :-1], masks.sigmoid())
    log_p = F.interpolate(mass.log()[:, None], size=(6, 8), mode="bilinear", align_corners=True)[:, 0]
    expected_x = log_p[negatives & ~padding].mean()
    u = F.interpolate(dataset, size=(6, 8), mode="bilinear", align_corners=False)
    ce = -u.log_softmax(1).gather(1, negatives.long()[:, None])[:, 0]
    expected_d = ce[~padding].mean()
    torch.testing.assert_close(result.terms["loss_likelihood"], 0.03 * expected_x)
    torch.testing.assert_close(result.terms["loss_posterior"], 0.3 * expected_d)
    with pytest.raises(UserError, match="dataset_head=true"):
        outlier_loss(MaskTransformerOutput(classes, masks), negatives, OutlierLossConfig("densehybrid"))
    with pytest.raises(UserError, match="has no margin"):
        OutlierLossConfig("densehybrid", margin=1.0)
