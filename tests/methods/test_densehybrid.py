"""DenseHybrid's score against its formula (paper 001; the authors' ``compute_ood_probs``), computed
here with numpy from the raw outputs: per-pixel logits and a mask transformer's marginal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mask2anomaly.errors import UserError
from mask2anomaly.methods import ScoreContext, parse_method
from mask2anomaly.models import MaskTransformer, MaskTransformerOutput
from mask2anomaly.models.espnetv2 import ESPNetV2Config, ESPNetV2Segmentation
from tests.models.tiny import tiny_config

SIZE = (8, 12)


def _upsample(x: torch.Tensor) -> np.ndarray:
    return F.interpolate(x, size=SIZE, mode="bilinear", align_corners=False).double().numpy()


def _log_out(dataset_logits: torch.Tensor) -> np.ndarray:
    u = _upsample(dataset_logits)
    return np.log(np.exp(u[:, 1]) / np.exp(u).sum(1))


def test_per_pixel_score_is_log_posterior_minus_logsumexp():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, 6, generator=g, dtype=torch.float64) * 3
    dataset = torch.randn(2, 2, 4, 6, generator=g, dtype=torch.float64) * 2
    ctx = ScoreContext.from_logits(logits, SIZE, dataset_logits=dataset)
    z = _upsample(logits)
    log_p = np.log(np.exp(z).sum(1))
    np.testing.assert_allclose(parse_method("densehybrid")(ctx).numpy(), _log_out(dataset) - log_p, atol=1e-12)
    np.testing.assert_allclose(parse_method("densehybrid+posterior")(ctx).numpy(), _log_out(dataset), atol=1e-12)
    np.testing.assert_allclose(parse_method("densehybrid+likelihood")(ctx).numpy(), -log_p, atol=1e-12)
    np.testing.assert_allclose(parse_method("energy")(ctx).numpy(), -log_p, atol=1e-12)


def test_mask_model_likelihood_is_the_known_mass_of_the_marginal():
    g = torch.Generator().manual_seed(1)
    classes = torch.randn(1, 6, 4, generator=g, dtype=torch.float64) * 2  # 3 known classes + no object
    masks = torch.randn(1, 6, 4, 6, generator=g, dtype=torch.float64) * 4
    dataset = torch.randn(1, 2, 4, 6, generator=g, dtype=torch.float64)
    ctx = ScoreContext.from_masks(MaskTransformerOutput(classes, masks, dataset_logits=dataset), SIZE)
    p = classes.softmax(-1)[0, :, :3].numpy()
    m = 1 / (1 + np.exp(-_upsample(masks)[0]))
    marginal = np.einsum("qk,qhw->khw", p, m)
    expected = _log_out(dataset)[0] - np.log(marginal.sum(0))
    np.testing.assert_allclose(parse_method("densehybrid")(ctx).numpy()[0], expected, atol=1e-12)


def test_models_carry_the_head_only_when_configured():
    x = torch.randn(1, 3, 64, 96)
    plain = MaskTransformer(tiny_config(), load_pretrained=False).eval()
    with_head = MaskTransformer(tiny_config(dataset_head=True), load_pretrained=False).eval()
    with torch.no_grad():
        assert plain(x).dataset_logits is None
        assert with_head(x).dataset_logits.shape == (1, 2, 16, 24)
    assert not any(k.startswith("dataset_head.") for k in plain.state_dict())
    espnet = ESPNetV2Segmentation(ESPNetV2Config(scale=0.5, dataset_head=True)).eval()
    with torch.no_grad():
        logits, dataset = espnet.forward_dense(x)
        torch.testing.assert_close(logits, espnet(x))
    assert dataset.shape == (1, 2, 64, 96)


def test_a_model_without_the_head_is_refused_with_the_command_that_makes_one():
    for name in ("densehybrid", "densehybrid+posterior"):
        with pytest.raises(UserError, match=r"lacks; fine-tune one with `mask2anomaly train --recipe"):
            parse_method(name).check_model(tiny_config())
    parse_method("densehybrid+likelihood").check_model(tiny_config())
    parse_method("densehybrid").check_model(tiny_config(dataset_head=True))
