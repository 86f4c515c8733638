"""Recipes: every shipped file validates; typos are errors that name the key."""

from __future__ import annotations

import pytest

from mask2anomaly.errors import UserError
from mask2anomaly.training.recipes import load_recipe, recipe_names
from mask2anomaly.training.trainer import learning_rate_factor
from tests.training.tiny_run import tiny_run

EXPECTED = {
    "cityscapes_r50_stage1",
    "cityscapes_r50_contrastive",
    "streethazards_swinb_stage1",
    "streethazards_swinb_contrastive",
    "coco_open_panoptic_r50",
    "synthetic_cpu",
    "synthetic_cpu_contrastive",
}


def test_all_recipes_validate():
    assert set(recipe_names()) >= EXPECTED
    for name in recipe_names():
        config = load_recipe(name)
        assert config.optim.max_steps > 0


def test_paper_settings():
    stage1, stage2 = load_recipe("cityscapes_r50_stage1"), load_recipe("cityscapes_r50_contrastive")
    assert (stage1.optim.lr, stage1.optim.weight_decay, stage1.optim.batch_size, stage1.optim.max_steps) == (
        1e-4,
        0.05,
        16,
        90000,
    )
    assert tuple(stage1.data.crop_size) == (380, 760) and stage1.model.attention == "global_masked"
    assert (stage2.optim.lr, stage2.optim.batch_size, stage2.loss.outlier.kind, stage2.loss.outlier.margin) == (
        1e-5,
        8,
        "contrastive",
        0.75,
    )
    assert stage2.model.backbone.freeze and stage2.data.anomaly_mix_probability == 0.2


def test_overrides_and_unknown_keys(tmp_path):
    config = load_recipe("synthetic_cpu", ["optim.lr=0.5", "model.attention=masked"])
    assert config.optim.lr == 0.5 and config.model.attention == "masked"
    with pytest.raises(UserError, match=r"unknown key 'lrr' \(did you mean lr\?\)"):
        load_recipe("synthetic_cpu", ["optim.lrr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  wieght_decay: 0.1\n")
    with pytest.raises(
        UserError, match=r"bad\.yaml\.optim: unknown key 'wieght_decay' \(did you mean weight_decay\?\)"
    ):
        load_recipe(str(bad))
    with pytest.raises(UserError, match="unknown recipe 'nope'"):
        load_recipe("nope")


def test_learning_rate_schedule_matches_formula():
    config = tiny_run(steps=10)
    for step in range(10):
        warm = 1.0 if step >= 2 else 0.1 * (1 - step / 2) + step / 2
        assert learning_rate_factor(step, config) == pytest.approx(warm * (1 - step / 10) ** 0.9)
