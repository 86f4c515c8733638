"""Deformable sampling against the plain ``grid_sample`` formulation of Deformable DETR."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mask2anomaly.models.deformable_attention import deformable_sample


def grid_sample_reference(value, shapes, locations, weights):
    """Per level: grid_sample every point (zeros outside), then weight and sum over levels and points."""
    batch, _, heads, dim = value.shape
    queries = locations.shape[1]
    out = torch.zeros(batch, heads, dim, queries, dtype=value.dtype)
    start = 0
    for level, (h, w) in enumerate(shapes):
        v = value[:, start : start + h * w].permute(0, 2, 3, 1).reshape(batch * heads, dim, h, w)
        start += h * w
        grid = 2 * locations[:, :, :, level].transpose(1, 2).flatten(0, 1) - 1
        sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        wl = weights[:, :, :, level].transpose(1, 2).flatten(0, 1).unsqueeze(1)
        out += (sampled * wl).sum(-1).view(batch, heads, dim, queries)
    return out.view(batch, heads * dim, queries).transpose(1, 2)


def _inputs(dtype=torch.float32, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (6, 2), (4, 4)]
    total = sum(h * w for h, w in shapes)
    value = torch.randn(2, total, 2, 4, generator=g, dtype=dtype)
    locations = torch.rand(2, 9, 2, 3, 4, 2, generator=g, dtype=dtype) * 1.6 - 0.3  # some points outside
    weights = torch.rand(2, 9, 2, 3, 4, generator=g, dtype=dtype)
    if requires_grad:
        for t in (value, locations, weights):
            t.requires_grad_()
    return value, shapes, locations, weights


def test_matches_grid_sample():
    value, shapes, locations, weights = _inputs(torch.float64)
    torch.testing.assert_close(
        deformable_sample(value, shapes, locations, weights),
        grid_sample_reference(value, shapes, locations, weights),
        atol=1e-12,
        rtol=0,
    )


def test_gradients_match_grid_sample():
    inputs = _inputs(torch.float64, requires_grad=True)
    value, _, locations, weights = inputs
    ours = torch.autograd.grad(deformable_sample(*inputs).square().sum(), (value, locations, weights))
    ref = torch.autograd.grad(grid_sample_reference(*inputs).square().sum(), (value, locations, weights))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
