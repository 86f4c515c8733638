"""Set criterion: each term by its formula, num_masks, deep supervision, transformers parity."""

from __future__ import annotations

import math

import pytest
import torch

from mask2anomaly.errors import UserError
from mask2anomaly.losses import HungarianMatcher, SetCriterion, uncertain_point_coords
from mask2anomaly.models.output import MaskPrediction, MaskTransformerOutput
from tests.losses.naive import bilinear, dice, mean_bce, softmax

NUM_CLASSES = 3


class FixedMatcher:
    """Returns the same assignment whatever the predictions."""

    def __init__(self, matches):
        self.matches = [(torch.tensor(rows), torch.tensor(cols)) for rows, cols in matches]

    def __call__(self, class_logits, mask_logits, targets, generator=None):
        return self.matches


def make_batch(seed: int, queries: int = 5, num_aux: int = 0, target_counts=(2, 1), size: int = 16):
    gen = torch.Generator().manual_seed(seed)

    def prediction():
        return (
            torch.randn(len(target_counts), queries, NUM_CLASSES + 1, generator=gen, dtype=torch.float64),
            3 * torch.randn(len(target_counts), queries, size // 4, size // 4, generator=gen, dtype=torch.float64),
        )

    class_logits, mask_logits = prediction()
    aux = tuple(MaskPrediction(*prediction()) for _ in range(num_aux))
    targets = [
        {
            "labels": torch.randint(0, NUM_CLASSES, (count,), generator=gen),
            "masks": torch.rand(count, size, size, generator=gen) > 0.5,
        }
        for count in target_counts
    ]
    return MaskTransformerOutput(class_logits, mask_logits, aux), targets


MATCHES = [([1, 3], [1, 0]), ([0], [0])]


def test_class_term_is_the_no_object_weighted_cross_entropy():
    output, targets = make_batch(0)
    criterion = SetCriterion(NUM_CLASSES, FixedMatcher(MATCHES), num_points=8)
    result = criterion(output, targets, torch.Generator().manual_seed(0))
    weights = [1.0] * NUM_CLASSES + [0.1]
    numerator = denominator = 0.0
    for b, (rows, cols) in enumerate(MATCHES):
        assigned = dict(zip(rows, cols, strict=True))
        for q in range(5):
            y = int(targets[b]["labels"][assigned[q]]) if q in assigned else NUM_CLASSES
            numerator += weights[y] * -math.log(softmax(output.class_logits[b, q].numpy())[y])
            denominator += weights[y]
    assert result.terms["loss_ce"].item() == pytest.approx(2.0 * numerator / denominator, rel=1e-6)


@pytest.mark.parametrize("num_masks", [None, 10.0, 0.0])
def test_mask_terms_are_point_losses_over_num_masks(num_masks):
    output, targets = make_batch(1)
    points = 12
    criterion = SetCriterion(NUM_CLASSES, FixedMatcher(MATCHES), num_points=points)
    result = criterion(output, targets, torch.Generator().manual_seed(3), num_masks=num_masks)
    matched = [(0, 1, 1), (0, 3, 0), (1, 0, 0)]
    pred = torch.stack([output.mask_logits[b, q] for b, q, _ in matched]).float()
    coords = uncertain_point_coords(pred[:, None], points, generator=torch.Generator().manual_seed(3))
    bce_sum = dice_sum = 0.0
    for n, (b, q, t) in enumerate(matched):
        xy = coords[n].tolist()
        logits = [bilinear(output.mask_logits[b, q].numpy(), x, y) for x, y in xy]
        labels = [bilinear(targets[b]["masks"][t].double().numpy(), x, y) for x, y in xy]
        bce_sum += mean_bce(logits, labels)
        dice_sum += dice(logits, labels)
    normaliser = {None: 3.0, 10.0: 10.0, 0.0: 1.0}[num_masks]
    assert result.terms["loss_mask"].item() == pytest.approx(5.0 * bce_sum / normaliser, rel=1e-5)
    assert result.terms["loss_dice"].item() == pytest.approx(5.0 * dice_sum / normaliser, rel=1e-5)


def test_total_is_the_sum_of_every_layer_computed_separately():
    output, targets = make_batch(2, num_aux=2)
    criterion = SetCriterion(NUM_CLASSES, HungarianMatcher(num_points=20), num_points=20)
    together = criterion(output, targets, torch.Generator().manual_seed(5))
    assert sorted(together.terms) == sorted(f"loss_{k}{s}" for k in ("ce", "mask", "dice") for s in ("", "_0", "_1"))
    generator = torch.Generator().manual_seed(5)
    layers = [(output.class_logits, output.mask_logits)] + [(a.class_logits, a.mask_logits) for a in output.aux]
    separate = [criterion(MaskTransformerOutput(c, m), targets, generator) for c, m in layers]
    expected_total = sum(part.total for part in separate)
    torch.testing.assert_close(together.total, expected_total)
    for suffix, part in zip(["", "_0", "_1"], separate, strict=True):
        for name, value in part.terms.items():
            torch.testing.assert_close(together.terms[name + suffix], value)
    torch.testing.assert_close(together.total, sum(together.terms.values()))


def test_agrees_with_transformers_mask2former_loss_under_the_same_global_seed():
    hf = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
    config_module = pytest.importorskip("transformers.models.mask2former.configuration_mask2former")
    output, targets = make_batch(3, queries=6, num_aux=2, target_counts=(3, 0, 2), size=32)
    output = MaskTransformerOutput(
        output.class_logits.float(),
        output.mask_logits.float(),
        tuple(MaskPrediction(a.class_logits.float(), a.mask_logits.float()) for a in output.aux),
    )
    config = config_module.Mask2FormerConfig(
        num_labels=NUM_CLASSES, train_num_points=64, oversample_ratio=3.0, importance_sample_ratio=0.75
    )
    reference_loss = hf.Mask2FormerLoss(config, weight_dict={})
    torch.manual_seed(21)
    reference = reference_loss(
        output.mask_logits,
        output.class_logits,
        [t["masks"].float() for t in targets],
        [t["labels"] for t in targets],
        auxiliary_predictions=[
            {"masks_queries_logits": a.mask_logits, "class_queries_logits": a.class_logits} for a in output.aux
        ],
    )
    criterion = SetCriterion(NUM_CLASSES, HungarianMatcher(num_points=64), num_points=64)
    torch.manual_seed(21)
    ours = criterion(output, targets)
    for suffix in ("", "_0", "_1"):
        torch.testing.assert_close(ours.terms["loss_ce" + suffix], 2.0 * reference["loss_cross_entropy" + suffix])
        torch.testing.assert_close(ours.terms["loss_mask" + suffix], 5.0 * reference["loss_mask" + suffix])
        torch.testing.assert_close(ours.terms["loss_dice" + suffix], 5.0 * reference["loss_dice" + suffix])


def test_a_batch_without_targets_trains_only_no_object():
    output, targets = make_batch(4, num_aux=1, target_counts=(0, 0))
    class_logits = output.class_logits.clone().requires_grad_()
    mask_logits = output.mask_logits.clone().requires_grad_()
    criterion = SetCriterion(NUM_CLASSES, HungarianMatcher(num_points=16), num_points=16)
    result = criterion(MaskTransformerOutput(class_logits, mask_logits, output.aux), targets)
    assert result.terms["loss_mask"].item() == 0.0 and result.terms["loss_dice"].item() == 0.0
    expected_ce = -torch.log_softmax(output.class_logits, -1)[..., -1].mean()
    torch.testing.assert_close(result.terms["loss_ce"], 2.0 * expected_ce.float())
    result.total.backward()
    assert class_logits.grad.abs().sum() > 0
    assert mask_logits.grad is not None and mask_logits.grad.abs().sum() == 0


def test_gradients_reach_every_layer():
    output, targets = make_batch(5, num_aux=2)
    leaves = [output.mask_logits.clone().requires_grad_()] + [
        a.mask_logits.clone().requires_grad_() for a in output.aux
    ]
    aux = tuple(MaskPrediction(a.class_logits, m) for a, m in zip(output.aux, leaves[1:], strict=True))
    criterion = SetCriterion(NUM_CLASSES, HungarianMatcher(num_points=16), num_points=16)
    criterion(MaskTransformerOutput(output.class_logits, leaves[0], aux), targets).total.backward()
    assert all(leaf.grad.abs().sum() > 0 for leaf in leaves)


def test_invalid_inputs_are_reported():
    with pytest.raises(UserError, match="importance_sample_ratio"):
        SetCriterion(NUM_CLASSES, HungarianMatcher(), importance_sample_ratio=1.5)
    with pytest.raises(UserError, match="weights must be >= 0"):
        SetCriterion(NUM_CLASSES, HungarianMatcher(), no_object_weight=-1)
    output, targets = make_batch(6)
    with pytest.raises(ValueError, match="expected 4 \\+ 1"):
        SetCriterion(4, HungarianMatcher(num_points=8), num_points=8)(output, targets)
    targets[1]["masks"] = torch.zeros(1, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="share their size"):
        SetCriterion(NUM_CLASSES, FixedMatcher(MATCHES), num_points=8)(output, targets)


def test_per_image_generators_make_split_batches_equal_the_joined_batch():
    """With one generator per image and the joined batch's normalisers, the two halves of a batch
    sum to the joined batch's loss (what DDP and gradient accumulation rely on)."""
    from mask2anomaly.losses import HungarianMatcher, SetCriterion
    from mask2anomaly.models.output import MaskPrediction, MaskTransformerOutput

    g = torch.Generator().manual_seed(0)
    class_logits = torch.randn(4, 6, 4, generator=g)
    mask_logits = torch.randn(4, 6, 8, 8, generator=g)
    aux = (MaskPrediction(torch.randn(4, 6, 4, generator=g), torch.randn(4, 6, 8, 8, generator=g)),)
    targets = []
    for t in (2, 0, 3, 1):
        targets.append(
            {"labels": torch.randint(0, 3, (t,), generator=g), "masks": torch.rand(t, 32, 32, generator=g) > 0.5}
        )
    criterion = SetCriterion(3, HungarianMatcher(num_points=64), num_points=64)
    num_targets = [len(t["labels"]) for t in targets]
    normaliser = sum(min(t, 6) + 0.1 * (6 - min(t, 6)) for t in num_targets)

    def loss(images):
        output = MaskTransformerOutput(
            class_logits[images],
            mask_logits[images],
            tuple(MaskPrediction(a.class_logits[images], a.mask_logits[images]) for a in aux),
        )
        generators = [torch.Generator().manual_seed(100 + i) for i in images]
        return criterion(
            output,
            [targets[i] for i in images],
            generator=generators,
            num_masks=sum(num_targets),
            class_normaliser=normaliser,
        ).total

    joined = loss([0, 1, 2, 3])
    torch.testing.assert_close(loss([0, 1]) + loss([2, 3]), joined, atol=1e-6, rtol=1e-6)
