"""The ablation on a tiny budget: nine runs trained once, scored, tabulated; re-running reuses them."""

from __future__ import annotations

import json

import pytest

from mask2anomaly.cli.main import main
from mask2anomaly.data.synthetic import VERSION as SYNTHETIC_VERSION
from mask2anomaly.experiments.ablation import ATTENTIONS, CONTRASTIVE, table
from mask2anomaly.models.loading import load_model
from tests.training.tiny_recipe import TINY_RECIPE_OVERRIDES


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    args = ["ablate", "--out", str(out), "--stage1-steps", "1", "--contrastive-steps", "1", "--batch-size", "2"]
    args += ["--images", "2", "--size", "64x128"]
    for item in TINY_RECIPE_OVERRIDES:
        args += ["--set", item]
    assert main(args) == 0
    return out, args


def test_every_combination_is_trained_with_its_settings(ablation):
    out, _ = ablation
    for attention in ATTENTIONS:
        for variant in CONTRASTIVE:
            run = out / attention / variant
            summary = json.loads((run / "last.json").read_text())
            assert summary["step"] == 1 and summary["synthetic_version"] == SYNTHETIC_VERSION
            assert load_model(run / "last.safetensors").config.attention == attention
            config = (run / "config.yaml").read_text()
            if variant != "none":
                assert f"variant: {variant}" in config
                assert str(out / attention / "none" / "last.safetensors") in config


def test_table_has_every_row_and_metric(ablation, capsys):
    out, _ = ablation
    results = json.loads((out / "ablation.json").read_text())["results"]
    for attention in ATTENTIONS:
        for variant in CONTRASTIVE:
            r = results[attention][variant]
            assert set(r) == {"auprc", "fpr95", "auprc_refine", "fpr95_refine", "miou"}
            assert all(0 <= v <= 1 for v in r.values())
    text = (out / "ablation.md").read_text()
    assert text == table(results) and len(text.splitlines()) == 2 + 9


def test_rerun_reuses_finished_runs(ablation):
    out, args = ablation
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/last.safetensors")}
    assert len(stamps) == 9
    assert main(args) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*/*/last.safetensors")}


def test_rerun_with_another_configuration_is_refused(ablation, capsys):
    out, args = ablation
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/last.safetensors")}
    assert main([*args, "--set", "loss.num_points=64"]) != 0
    assert f"{out / 'cross' / 'none'}: holds a run of another configuration (different loss)" in capsys.readouterr().err
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*/*/last.safetensors")}


def test_run_on_another_generator_version_is_refused(ablation, capsys):
    out, args = ablation
    summary = out / "cross" / "none" / "last.json"
    kept = summary.read_text()
    summary.write_text(json.dumps({**json.loads(kept), "synthetic_version": SYNTHETIC_VERSION - 1}))
    try:
        assert main(args) != 0
    finally:
        summary.write_text(kept)
    expected = f"{out / 'cross' / 'none'}: trained on synthetic data of generator version {SYNTHETIC_VERSION - 1}"
    assert expected in capsys.readouterr().err


def test_table_formats_percentages():
    row = {"auprc": 0.5, "fpr95": 0.25, "auprc_refine": 0.125, "fpr95_refine": 1.0, "miou": 0.875}
    results = {a: {v: row for v in CONTRASTIVE} for a in ATTENTIONS}
    lines = table(results).splitlines()
    assert lines[2] == "| cross | none | 50.00 | 25.00 | 12.50 | 100.00 | 87.50 |"
