"""The model shipped in the package: small enough, documented, trained, and what `mask2anomaly demo` runs."""

from __future__ import annotations

import json

import numpy as np

from mask2anomaly.cli.main import main
from mask2anomaly.data.synthetic import generate_scene
from mask2anomaly.experiments.demo import DENSEHYBRID_MODEL, DENSEHYBRID_PROVENANCE, PROVENANCE, SHIPPED_MODEL
from mask2anomaly.models.loading import load_model
from mask2anomaly.training.recipes import load_recipe
from tests.inference import independent


def test_weights_fit_the_budget_and_have_a_provenance():
    assert SHIPPED_MODEL.stat().st_size <= 20 * 2**20
    provenance = json.loads(PROVENANCE.read_text())
    assert {"commands", "seed", "commits", "wall_time", "training", "evaluation"} <= set(provenance)
    assert provenance["seed"] == load_recipe("synthetic_cpu").train.seed
    assert provenance["training"]["contrastive"]["steps"] == load_recipe("synthetic_cpu_contrastive").optim.max_steps
    assert provenance["training"]["stage1"]["steps"] == load_recipe("synthetic_cpu").optim.max_steps


def test_shipped_model_is_the_recipe_architecture_and_segments_validation_scenes():
    model = load_model(str(SHIPPED_MODEL)).eval()
    assert model.config == load_recipe("synthetic_cpu_contrastive").model
    confusion = np.zeros((19, 19), np.int64)
    for index in range(3):
        scene = generate_scene("val", index, seed=0, size=(256, 512))
        closed = independent.marginal(model, scene.image).argmax(0).numpy()
        valid = scene.train_ids < 19
        confusion += np.bincount(
            scene.train_ids[valid].astype(np.int64) * 19 + closed[valid], minlength=19 * 19
        ).reshape(19, 19)
    present = confusion.sum(1) > 0
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion)).clip(min=1)
    assert iou[present].mean() > 0.7


def test_demo_runs_the_shipped_model_by_default(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), "--images", "2", "--calibration-images", "2", "--size", "256x512"]
    assert main([*args, "--examples", "1"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"anomaly", "open_set_semantic", "open_panoptic"} <= set(metrics)
    page = (tmp_path / "report.html").read_text()
    assert "shipped with the package" in page and "synthetic_cpu.safetensors" in page
    assert "mask2anomaly+refine" in capsys.readouterr().out


def test_shipped_densehybrid_model_is_its_recipe_with_a_provenance():
    """The DenseHybrid model: the recipe's architecture (head included) and a provenance that says
    how it was made and where that differs from the recipe."""
    assert DENSEHYBRID_MODEL.stat().st_size <= 20 * 2**20
    provenance = json.loads(DENSEHYBRID_PROVENANCE.read_text())
    assert {"commands", "seed", "commit", "wall_time", "training", "evaluation", "differs_from_the_recipe"} <= set(
        provenance
    )
    model = load_model(str(DENSEHYBRID_MODEL)).eval()
    assert model.config == load_recipe("synthetic_cpu_densehybrid").model
    assert provenance["training"]["steps"] == 600
