"""Every registered method on one constructed street scene, and the naming rules."""

from __future__ import annotations

import re

import pytest
import torch

from mask2anomaly.errors import UserError
from mask2anomaly.methods import METHODS, ScoreContext, method_names, parse_method
from mask2anomaly.models import MaskTransformerOutput
from tests.methods.naive import OFF, ON, class_logits

K, Q = 19, 100
NO_OBJECT = K


def _scene() -> MaskTransformerOutput:
    """8 x 8 stride-4 masks: confident building (rows 0-1) and vegetation (rows 6-7), road elsewhere,
    except a 2 x 2 anomaly in the middle that only query 49 (mostly "no object") covers."""
    rows = [(NO_OBJECT, 0.99)] * Q
    rows[0], rows[1], rows[2], rows[49] = (2, 0.99), (8, 0.99), (0, 0.99), (NO_OBJECT, 0.9)
    masks = torch.full((Q, 8, 8), OFF, dtype=torch.float64)
    masks[0, :2] = ON
    masks[1, 6:] = ON
    masks[2, 2:6] = ON
    masks[2, 3:5, 3:5] = OFF
    masks[49, 3:5, 3:5] = ON
    return MaskTransformerOutput(
        class_logits(rows, K)[None].repeat(2, 1, 1), masks[None].repeat(2, 1, 1, 1), dataset_logits=DATASET_LOGITS
    )


def _dataset_logits() -> torch.Tensor:
    """DenseHybrid's head on the same 8 x 8 grid: outlier where the anomaly is, inlier elsewhere."""
    logits = torch.zeros(2, 2, 8, 8, dtype=torch.float64)
    logits[:, 1] = -4.0
    logits[:, 1, 3:5, 3:5] = 4.0
    return logits


DATASET_LOGITS = _dataset_logits()


SCENE = _scene()
SIZE = (16, 16)
ANOMALY = (slice(None), slice(7, 9), slice(7, 9))
INLIER = torch.ones(2, *SIZE, dtype=torch.bool)
INLIER[:, 4:12, 4:12] = False  # pixels away from the anomaly and its bilinear blur


def _context(method_name: str) -> ScoreContext:
    flipped = MaskTransformerOutput(SCENE.class_logits, SCENE.mask_logits.flip(-1))
    if METHODS[method_name.split("+")[0]].needs_masks:
        return ScoreContext.from_masks(SCENE, SIZE, flipped)
    logits = torch.zeros(2, K, 8, 8, dtype=torch.float64)
    logits[:, 0] = 6.0
    logits[:, 0, 3:5, 3:5] = 0.0
    return ScoreContext.from_logits(logits, SIZE, logits.flip(-1), DATASET_LOGITS)


@pytest.mark.parametrize("name", [*method_names(), "mask2anomaly+refine+tta", "mask2anomaly+refine_paper+tta"])
def test_method_scores_the_constructed_anomaly_above_inliers(name):
    method = parse_method(name)
    scores = method(_context(name))
    assert scores.shape == (2, *SIZE)
    assert torch.isfinite(scores).all()
    assert scores[ANOMALY].min() > scores[INLIER].max()


@pytest.mark.parametrize("name", [n for n in method_names() if not METHODS[n.split("+")[0]].needs_masks])
def test_per_pixel_methods_also_work_on_mask_outputs(name):
    scores = parse_method(name)(ScoreContext.from_masks(SCENE, SIZE))
    assert scores[ANOMALY].min() > scores[INLIER].max()


def test_mask_methods_refuse_per_pixel_logits():
    ctx = ScoreContext.from_logits(torch.zeros(1, 3, 4, 4), (4, 4))
    with pytest.raises(UserError, match="mask transformer"):
        parse_method("rba")(ctx)


def test_tta_without_flipped_outputs_is_an_error():
    with pytest.raises(UserError, match="flipped"):
        parse_method("mask2anomaly+tta")(ScoreContext.from_masks(SCENE, SIZE))


def test_names_round_trip_and_combine():
    assert parse_method("mask2anomaly+refine+tta").name == "mask2anomaly+refine+tta"
    assert parse_method("mask2anomaly+tta+refine").name == "mask2anomaly+refine+tta"
    assert parse_method("maskomaly+poster").variant == "poster"
    assert parse_method("energy", temperature=2.0).temperature == 2.0
    assert all(parse_method(n).name == n for n in method_names())


@pytest.mark.parametrize(
    ("spec", "params", "message"),
    [
        ("knn", {}, "valid methods: mask2anomaly, mask2anomaly+refine"),
        ("msp+refine", {}, "valid options: none"),
        ("mask2anomaly+refne", {}, "valid options: refine, refine_paper, tta"),
        ("mask2anomaly+refine+refine_paper", {}, "conflicts"),
        ("maskomaly", {"lambda_": 0.5}, "valid parameters: variant, t_mask"),
    ],
)
def test_unknown_names_list_the_valid_ones(spec, params, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_method(spec, **params)
