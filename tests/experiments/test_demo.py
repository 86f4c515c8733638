"""The demo pipeline end to end on a tiny configuration: splits written, every method evaluated on the
three tasks, metrics.json and a report with pictures; retraining runs both recipes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from mask2anomaly.cli.main import main
from mask2anomaly.data.synthetic import generate_scene
from mask2anomaly.errors import UserError
from mask2anomaly.experiments.demo import DENSEHYBRID_METHODS, METHODS, DemoConfig, run_demo
from mask2anomaly.models import MaskTransformer
from mask2anomaly.models.loading import load_model, save_model
from tests.inference import independent
from tests.models.tiny import tiny_config
from tests.training.tiny_recipe import TINY_RECIPE_OVERRIDES

SIZE = (64, 128)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    torch.manual_seed(0)
    model = MaskTransformer(tiny_config("global_masked", num_classes=19, num_queries=10))
    save_model(model, root / "tiny.safetensors")
    hybrid = MaskTransformer(tiny_config("global_masked", num_classes=19, num_queries=10, dataset_head=True))
    save_model(hybrid, root / "tiny_densehybrid.safetensors")
    config = DemoConfig(
        model=str(root / "tiny.safetensors"),
        densehybrid_model=str(root / "tiny_densehybrid.safetensors"),
        test_images=3,
        calibration_images=2,
        size=SIZE,
        examples=2,
    )
    metrics = run_demo(root / "out", config)
    return root / "out", metrics


def test_metrics_cover_every_method_and_task(demo_run):
    out, metrics = demo_run
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert {"anomaly", "open_set_semantic", "open_panoptic", "maskomaly_queries", "thresholds"} <= set(metrics)
    rows = [*METHODS, *DENSEHYBRID_METHODS]
    assert list(metrics["anomaly"]) == rows == list(metrics["open_set_semantic"])
    for name in rows:
        pixel = metrics["anomaly"][name]["pixel"]
        assert 0 <= pixel["auprc"] <= 1 and 0 <= pixel["fpr95"] <= 1 and metrics["anomaly"][name]["num_images"] == 3
        assert "pixel_mask2anomaly" in metrics["anomaly"][name]
        semantic = metrics["open_set_semantic"][name]
        assert 0 <= semantic["open_miou"] <= 1 and 0 <= semantic["miou"] <= 1
        assert semantic["threshold"] == metrics["thresholds"][name]
    assert set(metrics["open_panoptic"]) == {"paper", *(f"rba:{m}" for m in METHODS)}
    assert all("unknown" in v and 0 <= v["all"]["pq"] <= 1 for v in metrics["open_panoptic"].values())


def test_splits_are_the_generated_scenes(demo_run):
    out, _ = demo_run

    for split, seed, count in (("test", 0, 3), ("calibration", 1, 2)):
        for index in range(count):
            stored = np.asarray(Image.open(out / "data" / split / "anomaly" / "images" / f"{index}.png"))
            assert np.array_equal(stored, generate_scene("test", index, seed=seed, size=SIZE).image)
    labels = sorted((out / "evaluation" / "maps").glob("*/labels/*.png"))
    assert len(labels) == 3
    for index, path in enumerate(labels):
        expected = generate_scene("test", index, seed=0, size=SIZE).anomaly
        assert np.array_equal(np.asarray(Image.open(path)), expected)


def test_thresholds_reach_tpr_95_on_the_calibration_split(demo_run):
    """Independent check of one method's calibrated threshold: its scores on the calibration scenes
    from the model's raw output, and the share of anomaly pixels at or above the threshold."""
    out, metrics = demo_run
    model = load_model(str(out.parent / "tiny.safetensors")).eval()
    threshold = metrics["open_set_semantic"]["msp"]["threshold"]
    hits = total = 0
    for index in range(2):
        scene = generate_scene("test", index, seed=1, size=SIZE)
        score = independent.scores(model, scene.image)["msp"]
        anomaly = scene.anomaly == 1
        hits += int((score[anomaly] >= threshold - 1e-5).sum())  # float32 sums in another order
        total += int(anomaly.sum())
    assert hits / total > 0.95


def test_report_shows_tables_and_pictures(demo_run):
    out, _ = demo_run
    page = (out / "report.html").read_text()
    for heading in ("Anomaly segmentation", "Open-set semantic segmentation", "Open-set panoptic segmentation"):
        assert heading in page
    # per example: image, truth, a heatmap per method, closed set, two open-set maps, panoptic; the
    # DenseHybrid model's section: image, truth, its three heatmaps, closed set, one open-set map
    main_pictures, hybrid_pictures = 2 * (2 + len(METHODS) + 1 + 2 + 1), 2 * (2 + len(DENSEHYBRID_METHODS) + 1 + 1)
    assert len(re.findall(r'src="data:image/png;base64,', page)) == main_pictures + hybrid_pictures
    assert "DenseHybrid model (tiny_densehybrid.safetensors)" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "<script" not in page
    assert (out / "evaluation" / "report.html").exists()


def test_rerun_reuses_the_splits_and_refuses_other_ones(demo_run, tmp_path):
    out, _ = demo_run
    before = (out / "data" / "test" / "meta.json").stat().st_mtime_ns
    config = DemoConfig(model=str(out.parent / "tiny.safetensors"), test_images=3, calibration_images=2, size=SIZE)
    run_demo(out, config)
    assert (out / "data" / "test" / "meta.json").stat().st_mtime_ns == before
    with pytest.raises(UserError, match="holds another synthetic split"):
        run_demo(out, DemoConfig(model=config.model, test_images=4, calibration_images=2, size=SIZE))


def test_split_of_an_older_generator_is_regenerated(demo_run):
    out, _ = demo_run
    meta_path = out / "data" / "calibration" / "meta.json"
    meta = json.loads(meta_path.read_text())
    (out / "data" / "calibration" / "anomaly" / "labels_masks" / "0.png").unlink()
    meta_path.write_text(json.dumps({**meta, "version": meta["version"] - 1}))
    config = DemoConfig(model=str(out.parent / "tiny.safetensors"), test_images=3, calibration_images=2, size=SIZE)
    run_demo(out, config)
    assert json.loads(meta_path.read_text())["version"] == meta["version"]
    assert (out / "data" / "calibration" / "anomaly" / "labels_masks" / "0.png").exists()


def test_retrain_trains_every_stage_then_evaluates(tmp_path, capsys):
    overrides = ["optim.max_steps=2", *TINY_RECIPE_OVERRIDES]
    args = ["demo", "--retrain", "--out", str(tmp_path / "out"), "--images", "2", "--calibration-images", "2"]
    args += ["--size", "64x128", "--examples", "1"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    stage1 = json.loads((tmp_path / "out" / "train" / "stage1" / "last.json").read_text())
    stage2 = json.loads((tmp_path / "out" / "train" / "contrastive" / "last.json").read_text())
    hybrid = json.loads((tmp_path / "out" / "train" / "densehybrid" / "last.json").read_text())
    assert stage1["step"] == stage2["step"] == hybrid["step"] == 2
    printed = capsys.readouterr().out
    assert "mask2anomaly+refine" in printed and "densehybrid+posterior" in printed
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (
        metrics["anomaly"]["mask2anomaly"]["pixel"]["auprc"] > 0
        and metrics["anomaly"]["densehybrid"]["num_images"] == 2
    )
    assert metrics["densehybrid_model"] == str(tmp_path / "out" / "train" / "densehybrid" / "last.safetensors")


def test_model_and_retrain_are_exclusive():
    with pytest.raises(UserError, match="either a model or --retrain"):
        DemoConfig(model="m.safetensors", retrain=True)


def test_an_interrupted_split_is_generated_again(demo_run, tmp_path):
    out, metrics = demo_run
    partial = tmp_path / "out" / "data" / "calibration.partial"
    partial.mkdir(parents=True)
    (partial / "0.png").write_bytes(b"half a file")
    config = DemoConfig(
        model=str(out.parent / "tiny.safetensors"),
        densehybrid_model=str(out.parent / "tiny_densehybrid.safetensors"),
        test_images=3,
        calibration_images=2,
        size=SIZE,
        examples=2,
    )
    assert run_demo(tmp_path / "out", config) == metrics
    assert not partial.exists() and (tmp_path / "out" / "data" / "calibration" / "meta.json").exists()
