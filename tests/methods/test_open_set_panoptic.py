"""Known-class panoptic merge, connected components and both unknown-instance minings on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mask2anomaly.errors import UserError
from mask2anomaly.methods import ScoreContext
from mask2anomaly.methods.open_set_panoptic import (
    OpenSetPanoptic,
    background_map,
    group_entropy,
    mask_overlap,
    mine_unknown_paper,
    mine_unknown_rba,
    panoptic_merge,
    propagate_components,
)
from mask2anomaly.models import MaskTransformerOutput
from tests.methods.naive import OFF, ON, class_logits


def _masks(shape: tuple[int, int], regions: list[list[tuple[slice, slice]]]) -> torch.Tensor:
    out = torch.full((len(regions), *shape), OFF, dtype=torch.float64)
    for q, parts in enumerate(regions):
        for rows, cols in parts:
            out[q, rows, cols] = ON
    return out


def test_panoptic_merge_follows_mask2former():
    # K = 3: 0 road, 1 sky (stuff), 2 car (thing); 4 x 4 image
    rows = [(0, 0.95), (0, 0.9), (2, 0.99), (2, 0.7), (3, 0.99), (1, 0.9)]
    regions = [
        [(slice(1, 4), slice(0, 4))],  # road, keeps 10 of its 12 pixels after the car: kept
        [(slice(0, 1), slice(0, 2))],  # road again: merged into the first road segment
        [(slice(3, 4), slice(0, 2))],  # car, more confident than road where they overlap
        [(slice(0, 1), slice(2, 4))],  # car below the object threshold: dropped
        [(slice(0, 4), slice(0, 4))],  # "no object": dropped
        [(slice(1, 2), slice(2, 4))],  # sky, entirely under the more confident road: no pixels
    ]
    probs = class_logits(rows, 3).softmax(-1)
    result = panoptic_merge(probs, _masks((4, 4), regions).sigmoid(), thing_ids=(2,))
    assert result.ids.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [2, 2, 1, 1]]
    assert result.segments == [
        {"id": 1, "category_id": 0, "isthing": 0, "area": 12},
        {"id": 2, "category_id": 2, "isthing": 1, "area": 2},
    ]


def test_panoptic_merge_drops_segments_below_the_overlap_threshold():
    probs = class_logits([(0, 0.9), (1, 0.99)], 2).softmax(-1)
    masks = _masks((1, 4), [[(slice(0, 1), slice(0, 4))], [(slice(0, 1), slice(0, 2))]]).sigmoid()
    result = panoptic_merge(probs, masks, thing_ids=(1,))
    assert result.ids.tolist() == [[1, 1, 0, 0]]  # class 0 keeps 2 of 4 pixels < 0.8: dropped
    assert [s["category_id"] for s in result.segments] == [1]


@pytest.mark.parametrize("iterations", [None, 1000])
def test_components_match_scipy_when_converged(iterations):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(20, 30, generator=g) > 0.45
    mask[0] = False  # the propagation works in the foreground's bounding box
    ours = propagate_components(mask, iterations).numpy()
    ref, num = ndimage.label(mask.numpy(), structure=ndimage.generate_binary_structure(2, 1))
    assert ours.max() == num
    pairs = {(int(a), int(b)) for a, b in zip(ours.ravel(), ref.ravel(), strict=True)}
    assert len(pairs) == num + 1  # a one-to-one correspondence of labels, background included


def test_components_stay_split_when_iterations_run_out():
    line = torch.ones(1, 6, dtype=torch.bool)
    assert propagate_components(line, iterations=2).tolist() == [[1, 2, 3, 4, 4, 4]]
    assert propagate_components(line).tolist() == [[1] * 6]
    assert propagate_components(torch.zeros(2, 2, dtype=torch.bool), iterations=3).tolist() == [[0, 0], [0, 0]]


def test_group_entropy_readings():
    probs = torch.tensor([[0.2, 0.2, 0.09, 0.01, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(group_entropy(probs, (0, 1)), torch.tensor([1.0], dtype=torch.float64))
    expected = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)) / np.log(2)
    torch.testing.assert_close(group_entropy(probs, (2, 3)), torch.tensor([expected], dtype=torch.float64))
    mean = -(0.09 * np.log(0.09) + 0.01 * np.log(0.01)) / 2
    torch.testing.assert_close(group_entropy(probs, (2, 3), "mean"), torch.tensor([mean], dtype=torch.float64))
    binary = np.mean([-(p * np.log(p) + (1 - p) * np.log(1 - p)) for p in (0.09, 0.01)])
    torch.testing.assert_close(group_entropy(probs, (2, 3), "binary"), torch.tensor([binary], dtype=torch.float64))
    with pytest.raises(UserError, match="unknown entropy reading"):
        group_entropy(probs, (2, 3), "average")


def test_mask_overlap_readings():
    component = torch.zeros(4, 4, dtype=torch.bool)
    component[:2, :2] = True  # 4 pixels
    masks = torch.zeros(2, 4, 4, dtype=torch.float64)
    masks[0, :2, :] = 0.9  # covers the component and 4 more pixels
    masks[1, 0, 0] = 0.6  # one pixel of it
    iou = mask_overlap(masks, component, "iou")
    coverage = mask_overlap(masks, component, "coverage")
    soft = mask_overlap(masks, component, "soft")
    torch.testing.assert_close(iou, torch.tensor([4 / 8, 1 / 4], dtype=torch.float64))
    torch.testing.assert_close(coverage, torch.tensor([1.0, 1 / 4], dtype=torch.float64))
    torch.testing.assert_close(soft, torch.tensor([3.6 / (4 + 3.6), 0.6 / 4], dtype=torch.float64))


# K = 4: 0 road, 1 sky (stuff), 2 car, 3 person (things); 6 x 6 image covered by road except
# U (rows 1-2, cols 1-2, 4 px) and V (rows 4-5, cols 3-5, 6 px). Query 1 covers U and is unsure among
# stuff but fairly sure among things (E_S = 1 > E_T = 0.47): an unknown thing; query 2 covers V and is
# the other way round: background stuff.
PAN_PROBS = torch.tensor(
    [
        [0.99, 0.0025, 0.0025, 0.0025, 0.0025],
        [0.2, 0.2, 0.09, 0.01, 0.5],
        [0.36, 0.04, 0.05, 0.05, 0.5],
    ],
    dtype=torch.float64,
)
U = (slice(1, 3), slice(1, 3))
V = (slice(4, 6), slice(3, 6))
ROAD = torch.full((6, 6), ON, dtype=torch.float64)
ROAD[U] = OFF
ROAD[V] = OFF
PAN_MASKS = torch.stack([ROAD, _masks((6, 6), [[U]])[0], _masks((6, 6), [[V]])[0]])


def _region(*regions: tuple[slice, slice]) -> torch.Tensor:
    out = torch.zeros(6, 6, dtype=torch.bool)
    for r in regions:
        out[r] = True
    return out


def test_background_map_is_one_minus_the_best_known_query():
    b = background_map(PAN_PROBS, PAN_MASKS.sigmoid())
    assert b[0, 0].item() == pytest.approx(0.01, abs=1e-4)
    assert b[U].min().item() == pytest.approx(1.0, abs=1e-4)  # queries 1, 2 are "no object"


@pytest.mark.parametrize(("num_components", "found"), [(1, 0), (2, 1)])
def test_paper_mining_keeps_the_component_whose_mask_is_unsure_among_stuff(num_components, found):
    claimed = ~_region(U, V)
    masks = mine_unknown_paper(PAN_PROBS, PAN_MASKS.sigmoid(), claimed, (2, 3), num_components=num_components)
    assert len(masks) == found
    if found:
        assert torch.equal(masks[0], _region(U))


def test_paper_mining_needs_a_significant_overlap():
    wide = PAN_MASKS.clone()
    wide[1, 0:4, 0:4] = ON  # IoU with U: 4 / 16
    claimed = ~_region(U, V)
    assert mine_unknown_paper(PAN_PROBS, wide.sigmoid(), claimed, (2, 3), num_components=2) == []
    assert len(mine_unknown_paper(PAN_PROBS, wide.sigmoid(), claimed, (2, 3), num_components=2, min_overlap=0.2)) == 1
    covered = mine_unknown_paper(PAN_PROBS, wide.sigmoid(), claimed, (2, 3), num_components=2, overlap="coverage")
    assert len(covered) == 1 and torch.equal(covered[0], _region(U))  # the wide mask covers all of U


def test_paper_mining_entropy_readings_can_disagree():
    """Query 1 over U, stuff (0.2, 0.2), things (0.09, 0.01): E_S > E_T under every reading
    (normalised 1 > 0.47, mean 0.32 > 0.13). Query 2 over V, stuff (0.36, 0.04), things (0.05,
    0.05): normalised 0.47 < 1 (background stuff) but mean 0.25 > 0.15 and binary 0.41 > 0.20, so
    the un-normalised readings also call V unknown. A flatter query 1, stuff (0.25, 0.05), things
    (0.1, 0.1): normalised 0.65 < 1, mean 0.248 > 0.230."""
    claimed = ~_region(U, V)
    expected = {"normalised": [_region(U)], "mean": [_region(V), _region(U)], "binary": [_region(V), _region(U)]}
    for reading, regions in expected.items():
        found = mine_unknown_paper(PAN_PROBS, PAN_MASKS.sigmoid(), claimed, (2, 3), num_components=2, entropy=reading)
        assert [r.tolist() for r in found] == [r.tolist() for r in regions], reading
    flat = PAN_PROBS.clone()
    flat[1] = torch.tensor([0.25, 0.05, 0.1, 0.1, 0.5], dtype=torch.float64)
    assert mine_unknown_paper(flat, PAN_MASKS.sigmoid(), claimed, (2, 3), num_components=2) == []
    found = mine_unknown_paper(flat, PAN_MASKS.sigmoid(), claimed, (2, 3), num_components=2, entropy="mean")
    assert [r.tolist() for r in found] == [_region(V).tolist(), _region(U).tolist()]


def test_open_set_panoptic_adds_unknown_instances_after_the_known_segments():
    output = MaskTransformerOutput(PAN_PROBS.log()[None], PAN_MASKS[None])
    (result,) = OpenSetPanoptic(thing_ids=(2, 3), num_components=2)(ScoreContext.from_masks(output, (6, 6)))
    expected = torch.ones(6, 6, dtype=torch.int64)
    expected[U] = 2
    expected[V] = 0
    assert torch.equal(result.ids, expected)
    assert result.segments == [
        {"id": 1, "category_id": 0, "isthing": 0, "area": 26},
        {"id": 2, "category_id": -1, "isthing": 1, "area": 4},
    ]


def test_rba_mining_cleans_restricts_and_filters_components():
    scores = torch.zeros(14, 14)
    scores[2:6, 2:6] = 2.0  # A: 16 px
    scores[11, 2] = 2.0  # an isolated pixel, removed by the opening
    scores[7:12, 7:12] = 2.0  # B: 25 px, of which columns 10-11 are claimed by a known segment
    claimed = torch.zeros(14, 14, dtype=torch.bool)
    claimed[:, 10:] = True
    found = mine_unknown_rba(scores, claimed, score_threshold=1.0, min_area=12)
    a = torch.zeros(14, 14, dtype=torch.bool)
    a[2:6, 2:6] = True
    b = torch.zeros(14, 14, dtype=torch.bool)
    b[7:12, 7:10] = True
    assert len(found) == 2 and torch.equal(found[0], a) and torch.equal(found[1], b)
    assert len(mine_unknown_rba(scores, claimed, score_threshold=1.0, min_area=16)) == 1


def test_rba_closing_fills_one_pixel_gaps_and_the_border_does_not_erode():
    scores = torch.ones(5, 7)
    scores[:, 3] = 0.0  # a one-pixel gap splitting the image in two
    found = mine_unknown_rba(scores, torch.zeros(5, 7, dtype=torch.bool), score_threshold=0.5, min_area=1)
    assert len(found) == 1 and bool(found[0].all())


def test_open_set_panoptic_with_rba_mining_needs_scores_and_threshold():
    with pytest.raises(UserError, match="score_threshold"):
        OpenSetPanoptic(mining="rba")
    ctx = ScoreContext.from_masks(MaskTransformerOutput(PAN_PROBS.log()[None], PAN_MASKS[None]), (6, 6))
    method = OpenSetPanoptic(thing_ids=(2, 3), mining="rba", score_threshold=0.5, min_area=4)
    with pytest.raises(UserError, match="anomaly scores"):
        method(ctx)
    scores = torch.zeros(1, 6, 6)
    scores[0, :4, :4] = 1.0  # survives the 3x3 opening; only U of it is unclaimed
    (result,) = method(ctx, scores)
    assert result.segments[-1] == {"id": 2, "category_id": -1, "isthing": 1, "area": 4}
