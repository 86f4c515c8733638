"""Refinement mask and Maskomaly on outputs built so that every query's role is known."""

from __future__ import annotations

import pytest
import torch

from mask2anomaly.errors import UserError
from mask2anomaly.methods import (
    Mask2Anomaly,
    Maskomaly,
    QueryOverlap,
    ScoreContext,
    refinement_classes,
    refinement_mask,
)
from mask2anomaly.models import MaskTransformerOutput
from tests.methods.naive import OFF, ON, class_logits, marginal

K = 19  # Cityscapes trainIds: 0 road, 1 sidewalk, 2 building, 8 vegetation, 13 car


def _street(rows: list[tuple[int, float]], columns: list[list[int]]) -> MaskTransformerOutput:
    """A 2 x 4 image; query q's mask is on in the columns ``columns[q]`` (both rows)."""
    masks = torch.full((len(rows), 2, 4), OFF, dtype=torch.float64)
    for q, cols in enumerate(columns):
        masks[q, :, cols] = ON
    return MaskTransformerOutput(class_logits(rows, K)[None], masks[None])


# building, vegetation, sidewalk (confident), road only on the top-right pixel
STREET = _street([(2, 0.99), (8, 0.99), (1, 0.99), (0, 0.99)], [[0], [1], [2], []])
STREET.mask_logits[0, 3, 0, 3] = ON
PLAIN = 1 - marginal(STREET).amax(1)


def test_refinement_classes_of_both_variants():
    assert refinement_classes("code") == (2, 3, 4, 5, 6, 7, 8, 9, 10)
    assert refinement_classes("paper") == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)


def test_code_refinement_zeroes_confident_stuff_but_road_and_sidewalk():
    got = Mask2Anomaly(refine="code")(ScoreContext.from_masks(STREET, (2, 4)))
    expected = PLAIN.clone()
    expected[0, :, :2] = 0
    torch.testing.assert_close(got, expected)
    assert bool((expected[0, :, 2:] > 0).all())


def test_paper_refinement_also_zeroes_sidewalk():
    got = Mask2Anomaly(refine="paper")(ScoreContext.from_masks(STREET, (2, 4)))
    expected = PLAIN.clone()
    expected[0, :, :3] = 0
    torch.testing.assert_close(got, expected)


def test_refinement_needs_more_than_one_refining_query():
    single = _street([(2, 0.99), (13, 0.99)], [[0], [1]])
    ctx = ScoreContext.from_masks(single, (2, 4))
    assert not refinement_mask(ctx, refinement_classes("code")).any()
    assert refinement_mask(ctx, refinement_classes("code"), min_queries=1)[0, :, 0].all()


def test_refinement_thresholds_on_confidence_and_weighted_mask():
    out = _street([(2, 0.99), (8, 0.99), (3, 0.9)], [[0], [], [2]])
    out.mask_logits[0, 1, :, 1] = 0.0  # 0.99 * sigmoid(0) = 0.495 < 0.5: not refined
    mask = refinement_mask(ScoreContext.from_masks(out, (2, 4)), refinement_classes("code"))
    expected = torch.zeros(1, 2, 4, dtype=torch.bool)
    expected[0, :, 0] = True  # the wall query (class 3) has top probability 0.9 <= 0.95
    assert torch.equal(mask, expected)


def test_refinement_classes_for_another_label_set():
    out = MaskTransformerOutput(
        class_logits([(2, 0.99), (1, 0.99)], 3)[None],
        torch.tensor([[[ON, OFF]], [[OFF, ON]]], dtype=torch.float64)[None],
    )
    got = Mask2Anomaly(refine="code", refine_classes=(2,), min_queries=1)(ScoreContext.from_masks(out, (1, 2)))
    assert got[0, 0, 0] == 0 and got[0, 0, 1] > 0


# Maskomaly: K = 2, one row of 4 pixels
#   q0 class 0 (0.9, inlier)       on px 0, 1
#   q1 class 1 (0.8, inlier)       on px 1, 2   -> border with q0 at px 1
#   q2 class 1 (0.6, not inlier)   on px 3      -> the anomaly query; no-object probability 0.2
#   q3 class 0 (0.5, not inlier)   on px 2      -> border with q1 at px 2 in the code variant only
MASKO = MaskTransformerOutput(
    class_logits([(0, 0.9), (1, 0.8), (1, 0.6), (0, 0.5)], 2)[None],
    torch.tensor(
        [[[ON, ON, OFF, OFF]], [[OFF, ON, ON, OFF]], [[OFF, OFF, OFF, ON]], [[OFF, OFF, ON, OFF]]], dtype=torch.float64
    )[None],
)
MASKO_CTX = ScoreContext.from_masks(MASKO, (1, 4))


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("code", [0.6 * 0.1, 0.0, 0.0, 0.6 + 0.4 * 0.6]),
        ("poster", [0.6 * 0.1, 0.0, 0.6 * 0.2, 0.6 + 0.4 * 0.2]),
    ],
)
def test_maskomaly_hand_worked(variant, expected):
    got = Maskomaly(variant=variant, rejected_queries=(), anomaly_queries=(2,))(MASKO_CTX)
    torch.testing.assert_close(got[0, 0], torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=0)


def test_maskomaly_always_rejects_the_rejected_queries():
    got = Maskomaly(rejected_queries=(2,), anomaly_queries=(2,))(MASKO_CTX)
    assert got[0, 0, 3].item() == pytest.approx(0.6 * (1 - 0.6) + 0.4 * 0.6, abs=1e-4)


def test_maskomaly_rejects_query_indices_beyond_the_model():
    with pytest.raises(UserError, match="select-queries"):
        Maskomaly()(MASKO_CTX)


def test_query_overlap_ranks_by_mean_iou_over_images_with_anomalies():
    # q0 covers the anomaly exactly in image 0 and half of it in image 1; q1 is off; q2 covers the
    # anomaly plus one inlier pixel in both; q3 is exactly the void pixel
    masks = torch.full((3, 4, 1, 4), OFF, dtype=torch.float64)
    masks[0, 0, 0, :2] = ON
    masks[1, 0, 0, 0] = ON
    masks[0, 2, 0, :3] = ON
    masks[1, 2, 0, :3] = ON
    masks[:, 3, 0, 3] = ON
    labels = torch.tensor([[[1, 1, 0, 255]], [[1, 1, 0, 255]], [[0, 0, 0, 255]]])

    def context(images: slice) -> ScoreContext:
        part = masks[images]
        return ScoreContext.from_masks(
            MaskTransformerOutput(torch.zeros(len(part), 4, 3, dtype=torch.float64), part), (1, 4)
        )

    first, second = QueryOverlap(), QueryOverlap()
    first.update(context(slice(0, 1)), labels[:1])
    second.update(context(slice(1, 3)), labels[1:])
    first.merge(second)
    selection = first.select(top_k=2)
    torch.testing.assert_close(selection.mean_iou, torch.tensor([0.75, 0.0, 2 / 3, 0.0], dtype=torch.float64))
    assert selection.queries == (0, 2)
    assert selection.num_images == 2
