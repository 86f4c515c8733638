"""Hungarian matcher: optimal against brute force, costs by formula, empty images, transformers parity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mask2anomaly.errors import UserError
from mask2anomaly.losses import HungarianMatcher
from tests.losses.naive import dice, mean_bce, softmax


def random_problem(seed: int, queries: int, num_targets: int, classes: int = 4, size: int = 4):
    gen = torch.Generator().manual_seed(seed)
    class_logits = 2 * torch.randn(1, queries, classes + 1, generator=gen)
    mask_logits = 3 * torch.randn(1, queries, size, size, generator=gen)
    labels = torch.randint(0, classes, (num_targets,), generator=gen)
    masks = torch.rand(num_targets, size, size, generator=gen) > 0.5
    return class_logits, mask_logits, {"labels": labels, "masks": masks}


def pixel_centres(size: int) -> torch.Tensor:
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], -1)[None]


def naive_cost(class_logits, mask_logits, target, weights=(2.0, 5.0, 5.0)) -> np.ndarray:
    """Cost from the pixel values themselves (the points are the pixel centres)."""
    queries = class_logits.shape[1]
    labels, masks = target["labels"].tolist(), target["masks"].double()
    cost = np.zeros((queries, len(labels)))
    for q in range(queries):
        probs = softmax(class_logits[0, q].double().numpy())
        logits = mask_logits[0, q].flatten().tolist()
        for t, label in enumerate(labels):
            values = masks[t].flatten().tolist()
            cost[q, t] = (
                -weights[0] * probs[label] + weights[1] * mean_bce(logits, values) + weights[2] * dice(logits, values)
            )
    return cost


def brute_force_minimum(cost: np.ndarray) -> float:
    queries, num_targets = cost.shape
    return min(
        sum(cost[q, t] for t, q in enumerate(chosen)) for chosen in itertools.permutations(range(queries), num_targets)
    )


@pytest.mark.parametrize("seed", range(12))
def test_matching_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    queries = int(rng.integers(1, 7))
    num_targets = int(rng.integers(1, min(4, queries) + 1))
    class_logits, mask_logits, target = random_problem(seed, queries, num_targets)
    matcher = HungarianMatcher(num_points=16)
    coords = pixel_centres(4)
    cost = matcher.cost_matrix(class_logits[0], mask_logits[0], target["labels"], target["masks"], coords)
    expected = naive_cost(class_logits, mask_logits, target)
    np.testing.assert_allclose(cost.numpy(), expected, rtol=1e-5, atol=1e-5)

    generator = torch.Generator().manual_seed(seed)
    ((rows, cols),) = matcher(class_logits, mask_logits, [target], generator=generator)
    drawn = torch.rand(1, 16, 2, generator=torch.Generator().manual_seed(seed))
    drawn_cost = matcher.cost_matrix(class_logits[0], mask_logits[0], target["labels"], target["masks"], drawn).numpy()
    assert rows.dtype == cols.dtype == torch.int64
    assert len(rows) == num_targets and sorted(cols.tolist()) == list(range(num_targets))
    assert len(set(rows.tolist())) == num_targets
    assert drawn_cost[rows, cols].sum() == pytest.approx(brute_force_minimum(drawn_cost.astype(np.float64)), abs=1e-5)


def test_images_without_targets_get_empty_matches():
    class_logits, mask_logits, target = random_problem(0, 5, 3)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 4, 4, dtype=torch.bool)}
    matches = HungarianMatcher(num_points=16)(
        class_logits.repeat(2, 1, 1), mask_logits.repeat(2, 1, 1, 1), [empty, target], torch.Generator().manual_seed(0)
    )
    assert [len(m[0]) for m in matches] == [0, 3]
    assert matches[0][0].dtype == matches[0][1].dtype == torch.int64


def test_matching_equals_transformers_with_the_same_global_seed():
    hf = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
    gen = torch.Generator().manual_seed(4)
    class_logits = torch.randn(3, 6, 5, generator=gen)
    mask_logits = torch.randn(3, 6, 8, 8, generator=gen)
    labels = [torch.tensor([0, 3, 1]), torch.zeros(0, dtype=torch.int64), torch.tensor([2, 2])]
    masks = [torch.rand(len(lab), 32, 32, generator=gen).gt(0.6).float() for lab in labels]
    targets = [{"labels": lab, "masks": m} for lab, m in zip(labels, masks, strict=True)]
    torch.manual_seed(9)
    reference = hf.Mask2FormerHungarianMatcher(2.0, 5.0, 5.0, num_points=200)(mask_logits, class_logits, masks, labels)
    torch.manual_seed(9)
    ours = HungarianMatcher(2.0, 5.0, 5.0, num_points=200)(class_logits, mask_logits, targets)
    for (rows, cols), (ref_rows, ref_cols) in zip(ours, reference, strict=True):
        assert torch.equal(rows, ref_rows) and torch.equal(cols, ref_cols)


def test_invalid_options_and_targets_are_reported():
    with pytest.raises(UserError, match="not all 0"):
        HungarianMatcher(0.0, 0.0, 0.0)
    with pytest.raises(UserError, match="num_points"):
        HungarianMatcher(num_points=0)
    class_logits, mask_logits, target = random_problem(0, 3, 2)
    with pytest.raises(ValueError, match="labels \\[T\\] and masks \\[T, H, W\\]"):
        HungarianMatcher()(class_logits, mask_logits, [{"labels": target["labels"], "masks": target["masks"][0]}])
    with pytest.raises(ValueError, match="2 targets for a batch of 1"):
        HungarianMatcher()(class_logits, mask_logits, [target, target])
    with pytest.raises(ValueError, match="not finite"):
        HungarianMatcher(num_points=8)(class_logits * float("nan"), mask_logits, [target])
