"""The semantic marginal against a direct loop over queries."""

from __future__ import annotations

import torch

from mask2anomaly.models import MaskTransformerOutput
from mask2anomaly.models.postprocess import semantic_marginal


def test_semantic_marginal_equals_sum_over_queries():
    g = torch.Generator().manual_seed(0)
    out = MaskTransformerOutput(torch.randn(2, 4, 4, generator=g), torch.randn(2, 4, 5, 6, generator=g))
    got = semantic_marginal(out)
    expected = torch.zeros(2, 3, 5, 6)
    for b in range(2):
        for q in range(4):
            p = torch.softmax(out.class_logits[b, q], 0)
            for k in range(3):
                expected[b, k] += p[k] * torch.sigmoid(out.mask_logits[b, q])
    torch.testing.assert_close(got, expected)
    assert semantic_marginal(out, (10, 12)).shape == (2, 3, 10, 12)
