"""Banded mask probabilities equal the whole-image ``sigmoid(interpolate(M))``, and so do the context's
reductions built on them (marginal, its maximum and argmax, weighted maxima, counts)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mask2anomaly.methods import Mask2Anomaly, ScoreContext, parse_method, score_methods
from mask2anomaly.methods.mask_bands import mask_prob_bands
from mask2anomaly.models import MaskTransformerOutput


def whole(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0].sigmoid()


def joined(logits: torch.Tensor, size: tuple[int, int], band_elements: int) -> torch.Tensor:
    parts, row = [], 0
    for top, bottom, probs in mask_prob_bands(logits, size, band_elements):
        assert top == row and bottom > top and probs.shape == (logits.shape[0], bottom - top, size[1])
        parts.append(probs.clone())
        row = bottom
    assert row == size[0]
    return torch.cat(parts, 1)


@pytest.mark.parametrize(
    ("source", "size"),
    [
        ((3, 4), (12, 16)),  # factor 4, as a mask transformer's masks
        ((5, 7), (15, 21)),  # factor 3
        ((4, 5), (8, 20)),  # different factors along the two axes
        ((4, 4), (4, 4)),  # same size
        ((1, 3), (4, 12)),  # a single source row
        ((3, 4), (7, 9)),  # not a multiple: whole-map fallback
        ((6, 8), (3, 4)),  # downsampling: whole-map fallback
    ],
)
@pytest.mark.parametrize("band_elements", [1, 100, 1 << 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bands_equal_whole_map_upsampling(source, size, band_elements, dtype):
    logits = torch.randn(5, *source, generator=torch.Generator().manual_seed(0), dtype=dtype) * 4
    torch.testing.assert_close(joined(logits, size, band_elements), whole(logits, size))


def test_no_queries_give_no_bands():
    assert list(mask_prob_bands(torch.zeros(0, 3, 4), (12, 16))) == []


def random_output(seed: int = 1, shape=(2, 7, 4, 5, 6)) -> MaskTransformerOutput:
    batch, queries, classes, h, w = shape
    g = torch.Generator().manual_seed(seed)
    return MaskTransformerOutput(
        torch.randn(batch, queries, classes + 1, generator=g, dtype=torch.float64) * 3,
        torch.randn(batch, queries, h, w, generator=g, dtype=torch.float64) * 4,
    )


SIZE = (20, 24)


def reference_marginal(output: MaskTransformerOutput) -> torch.Tensor:
    probs = output.class_logits.softmax(-1)[..., :-1]
    masks = torch.stack([whole(m, SIZE) for m in output.mask_logits])
    return torch.einsum("bqk,bqhw->bkhw", probs, masks)


@pytest.mark.parametrize("order", ["max_first", "scores_first"])
def test_context_reductions_without_whole_masks(order):
    output = random_output()
    ctx = ScoreContext.from_masks(output, SIZE)
    f = reference_marginal(output)
    if order == "scores_first":
        torch.testing.assert_close(ctx.class_scores, f)
    torch.testing.assert_close(ctx.class_max, f.amax(1))
    assert torch.equal(ctx.class_argmax, f.argmax(1))
    torch.testing.assert_close(ctx.class_scores, f)
    assert "mask_probs" not in ctx._cache


def test_weighted_max_and_counts_without_whole_masks():
    output = random_output(2)
    masks = torch.stack([whole(m, SIZE) for m in output.mask_logits])
    weights = torch.rand(2, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    weights[:, ::2] = 0
    weights[1] = 0
    expected = (weights[:, :, None, None] * masks).amax(1)
    torch.testing.assert_close(ScoreContext.from_masks(output, SIZE).max_weighted_mask(weights), expected)
    selected = weights > 0
    count = ((masks > 0.3) & selected[:, :, None, None]).sum(1)
    assert torch.equal(ScoreContext.from_masks(output, SIZE).count_masks_above(selected, 0.3), count)


def test_methods_agree_whether_or_not_the_whole_masks_exist():
    output = random_output(4)
    names = ["mask2anomaly", "mask2anomaly+refine", "msp", "max_logit", "energy", "rba", "maskomaly"]
    output.class_logits[:, :3, 1] += 6  # confident queries of a refinement class
    params = {
        "mask2anomaly+refine": {"refine_classes": (1, 2)},
        "maskomaly": {"rejected_queries": (1,), "anomaly_queries": (2, 3)},
    }
    methods = [parse_method(n, **params.get(n, {})) for n in names]
    banded = score_methods(ScoreContext.from_masks(output, SIZE), methods)
    whole_ctx = ScoreContext.from_masks(output, SIZE)
    assert whole_ctx.mask_probs.shape == (2, 7, *SIZE)
    for method in methods:
        torch.testing.assert_close(banded[method.name], method(whole_ctx))
    assert (banded["mask2anomaly+refine"] == 0).any() and not (banded["mask2anomaly"] == 0).any()


@pytest.fixture
def passes(monkeypatch) -> list[int]:
    """The query count of every pass over the masks that the context makes."""
    counts: list[int] = []

    def counted(logits, size):
        counts.append(logits.shape[0])
        return mask_prob_bands(logits, size)

    monkeypatch.setattr("mask2anomaly.methods.base.mask_prob_bands", counted)
    return counts


def test_score_methods_makes_one_pass_over_the_masks(passes):
    methods = [Mask2Anomaly(), parse_method("msp")]
    score_methods(ScoreContext.from_masks(random_output(5), SIZE), methods)
    assert passes == [7, 7]  # one per image
    passes.clear()
    ctx = ScoreContext.from_masks(random_output(5), SIZE)
    for method in methods:
        method(ctx)
    assert passes == [7, 7, 7, 7]  # the maximum first, then the whole marginal again


def test_closed_set_prediction_comes_with_the_maximum_in_the_same_pass(passes):
    output = random_output(6)
    output.class_logits[..., 1] = output.class_logits[..., 2]  # classes 1 and 2 tie everywhere
    output.class_logits[:, :, 1:3] += 5
    ctx = ScoreContext.from_masks(output, SIZE)
    score_methods(ctx, [Mask2Anomaly()], closed_set=True)
    f = reference_marginal(output)
    assert torch.equal(ctx.class_argmax, f.argmax(1)) and (ctx.class_argmax == 1).any()
    torch.testing.assert_close(ctx.class_max, f.amax(1))
    assert passes == [7, 7]
