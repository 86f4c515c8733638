"""Point sampling: bilinear values, importance sampling, determinism, agreement with transformers."""

from __future__ import annotations

import pytest
import torch

from mask2anomaly.losses import point_sample, uncertain_point_coords, uniform_point_coords
from tests.losses.naive import bilinear


def test_point_sample_matches_explicit_bilinear_interpolation():
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    coords = torch.rand(2, 11, 2, generator=gen, dtype=torch.float64)
    coords[0, 0] = torch.tensor([0.0, 0.0])
    coords[0, 1] = torch.tensor([1.0, 1.0])
    coords[1, 2] = torch.tensor([0.5 / 7, 2.5 / 5], dtype=torch.float64)
    sampled = point_sample(maps, coords)
    assert sampled.shape == (2, 3, 11)
    for b in range(2):
        for c in range(3):
            for p in range(11):
                x, y = coords[b, p].tolist()
                assert sampled[b, c, p].item() == pytest.approx(bilinear(maps[b, c].numpy(), x, y), abs=1e-12)
    assert sampled[1, :, 2].tolist() == pytest.approx(maps[1, :, 2, 0].tolist(), abs=1e-12)


def test_point_sample_three_dim_maps_give_one_value_per_map_and_point():
    maps = torch.randn(4, 6, 6)
    coords = torch.rand(4, 9, 2)
    torch.testing.assert_close(point_sample(maps, coords), point_sample(maps[:, None], coords)[:, 0])


def test_point_sample_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="coords"):
        point_sample(torch.zeros(2, 1, 4, 4), torch.zeros(3, 5, 2))


def test_uncertain_points_lie_where_the_logits_are_near_zero():
    logits = torch.full((3, 1, 32, 32), 8.0)
    logits[:, :, :, :8] = 0.0
    coords = uncertain_point_coords(
        logits, 40, oversample_ratio=3.0, importance_sample_ratio=0.5, generator=torch.Generator().manual_seed(1)
    )
    assert coords.shape == (3, 40, 2)
    # 120 uniform candidates put ~30 (and, for this seed, at least 20) in the left quarter: all 20 chosen lie there.
    assert (coords[:, :20, 0] <= 7.5 / 32).all()
    assert (coords[:, 20:, 0] > 8.5 / 32).any()


def test_uncertain_points_are_the_top_candidates_of_the_documented_draw():
    logits = torch.randn(2, 1, 9, 9, generator=torch.Generator().manual_seed(3))
    coords = uncertain_point_coords(logits, 10, 3.0, 0.7, generator=torch.Generator().manual_seed(5))
    replay = torch.Generator().manual_seed(5)
    candidates = torch.rand(2, 30, 2, generator=replay)
    extra = torch.rand(2, 3, 2, generator=replay)
    uncertainty = -point_sample(logits, candidates)[:, 0].abs()
    for m in range(2):
        order = torch.argsort(uncertainty[m], descending=True)[:7]
        torch.testing.assert_close(coords[m, :7], candidates[m, order])
    torch.testing.assert_close(coords[:, 7:], extra)


def test_sampling_is_deterministic_for_a_generator_and_leaves_the_global_stream_alone():
    logits = torch.randn(4, 1, 16, 16)
    torch.manual_seed(123)
    first = uncertain_point_coords(logits, 64, generator=torch.Generator().manual_seed(7))
    after_first = torch.rand(3)
    torch.manual_seed(123)
    untouched = torch.rand(3)
    second = uncertain_point_coords(logits, 64, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert torch.equal(after_first, untouched)
    assert not torch.equal(first, uncertain_point_coords(logits, 64, generator=torch.Generator().manual_seed(8)))


def test_uniform_points_are_drawn_on_the_generator_device():
    points = uniform_point_coords(2, 5, "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(points, torch.rand(2, 5, 2, generator=torch.Generator().manual_seed(0)))
    assert points.min() >= 0 and points.max() < 1


def test_importance_sampling_equals_transformers_with_the_same_global_seed():
    hf = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
    logits = torch.randn(5, 1, 12, 20, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(11)
    reference = hf.Mask2FormerLoss.sample_points_using_uncertainty(None, logits, lambda x: -x.abs(), 50, 3.0, 0.75)
    torch.manual_seed(11)
    ours = uncertain_point_coords(logits, 50, 3.0, 0.75)
    assert torch.equal(ours, reference)
    values = hf.sample_point(logits, ours, align_corners=False).squeeze(1)
    assert torch.equal(point_sample(logits, ours)[:, 0], values)


def test_rejects_bad_ratios_and_shapes():
    with pytest.raises(ValueError, match="oversample_ratio"):
        uncertain_point_coords(torch.zeros(1, 1, 4, 4), 8, oversample_ratio=0.5)
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        uncertain_point_coords(torch.zeros(1, 2, 4, 4), 8)
