"""Training: a tiny model learns, DDP equals one process, a killed run resumes bit-identically,
bad input fails early and a NaN loss keeps the last good checkpoint."""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mask2anomaly import load_model
from mask2anomaly.config_utils import to_dict
from mask2anomaly.data import open_spec
from mask2anomaly.data.synthetic import VERSION as SYNTHETIC_VERSION
from mask2anomaly.errors import UserError
from mask2anomaly.inference import EvaluateConfig, OpenSetOptions, evaluate
from mask2anomaly.losses import OutlierLossConfig
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic
from mask2anomaly.models.postprocess import semantic_marginal
from mask2anomaly.training import trainer as trainer_module
from mask2anomaly.training.checkpoint import load_training_state
from mask2anomaly.training.config import MiningConfig
from mask2anomaly.training.recipes import load_recipe
from mask2anomaly.training.trainer import TrainingError, train
from tests.training.tiny_run import tiny_run

REPO = Path(__file__).resolve().parents[2]


def _miou(model, reader, num_classes=19) -> float:
    """Mean IoU over the classes present, from a confusion matrix built with bincount."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    model.eval()
    with torch.no_grad():
        for i in range(len(reader)):
            sample = reader[i]
            x, _ = model.preprocess([sample.image])
            pred = (
                semantic_marginal(model(x), tuple(x.shape[-2:]))[0]
                .argmax(0)
                .numpy()[: sample.size[0], : sample.size[1]]
            )
            gt = sample.semantic.astype(np.int64)
            keep = gt < num_classes
            confusion += np.bincount(gt[keep] * num_classes + pred[keep], minlength=num_classes**2).reshape(
                num_classes, num_classes
            )
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = confusion.sum(1) > 0
    return float((inter[present] / union[present]).mean())


def test_tiny_model_overfits_a_few_images(tmp_path):
    config = tiny_run(steps=40, batch_size=2)
    config = replace(
        config,
        data=replace(
            config.data,
            train="synthetic:train?n=2&size=64x96",
            crop_size=(64, 96),
            short_edge=(64, 64),
            flip=0.0,
            color_jitter=False,
        ),
        train=replace(config.train, checkpoint_every=40, log_every=1),
    )
    torch.manual_seed(config.train.seed)
    reader = open_spec("synthetic:train?n=2&size=64x96")
    before = _miou(trainer_module.build_model(config), reader)
    path = train(config, tmp_path / "run")
    losses = [float(row.split(",")[1]) for row in (tmp_path / "run/log.csv").read_text().splitlines()[1:]]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    after = _miou(load_model(path), reader)
    assert after > before + 0.15, (before, after)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, config_dict: dict, out: str) -> None:
    from mask2anomaly.config_utils import from_dict
    from mask2anomaly.training.config import RunConfig

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    train(from_dict(RunConfig, config_dict), out, device="cpu")


def test_two_processes_equal_one_process_on_the_joined_batch(tmp_path):
    # A large Adam epsilon makes the update a smooth function of the gradient (about lr * gradient),
    # so float rounding in the gradient sums cannot flip the sign of an lr-sized step of a parameter
    # whose gradient is ~0, and the comparison can be tight.
    config = tiny_run(steps=1, batch_size=4)
    config = replace(config, optim=replace(config.optim, eps=1.0, lr=1.0))
    torch.set_num_threads(1)
    try:
        single = train(config, tmp_path / "single", device="cpu")
    finally:
        torch.set_num_threads(2)
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, _free_port(), to_dict(config), str(tmp_path / "ddp")), nprocs=2, join=True
    )
    accumulated = train(replace(config, optim=replace(config.optim, accumulation=2)), tmp_path / "accumulated")
    reference = load_training_state(single).model
    for other in (tmp_path / "ddp/last.safetensors", accumulated):
        state = load_training_state(other).model
        for key, value in reference.items():
            torch.testing.assert_close(state[key], value, atol=1e-7, rtol=1e-6, msg=f"{other}: {key}")
    torch.manual_seed(config.train.seed)
    initial = dict(trainer_module.build_model(config).named_parameters())
    moved = [key for key, value in initial.items() if not torch.equal(reference[key], value.detach())]
    assert len(moved) > 0.9 * len(initial), f"the step changed only {len(moved)} of {len(initial)} parameters"


def _train_command(recipe: Path, out: Path, resume: bool = False) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "mask2anomaly",
        "train",
        "--recipe",
        str(recipe),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    return command + (["--resume"] if resume else [])


def test_killed_run_resumes_bit_identically(tmp_path):
    config = tiny_run(steps=8, batch_size=2)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(to_dict(config)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run(_train_command(recipe, tmp_path / "whole"), check=True, env=env, capture_output=True)

    victim = subprocess.Popen(
        _train_command(recipe, tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    summary = tmp_path / "killed/last.json"
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None:
        if summary.exists() and json.loads(summary.read_text())["step"] >= 3:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = load_training_state(tmp_path / "killed/last.safetensors").step
    assert 3 <= killed_at < 8
    subprocess.run(_train_command(recipe, tmp_path / "killed", resume=True), check=True, env=env, capture_output=True)

    whole = load_training_state(tmp_path / "whole/last.safetensors")
    resumed = load_training_state(tmp_path / "killed/last.safetensors")
    assert whole.step == resumed.step == 8
    for key, value in whole.model.items():
        assert torch.equal(resumed.model[key], value), key
    for index, entry in whole.optimizer["state"].items():
        for name, value in entry.items():
            assert torch.equal(resumed.optimizer["state"][index][name], value), (index, name)


def test_missing_data_fails_before_any_work(tmp_path):
    config = tiny_run()
    config = replace(config, data=replace(config.data, train=f"cityscapes:{tmp_path / 'nowhere'}"))
    with pytest.raises(UserError, match="nowhere"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_existing_run_needs_resume(tmp_path):
    config = tiny_run(steps=1)
    train(config, tmp_path / "run")
    with pytest.raises(UserError, match="pass --resume"):
        train(config, tmp_path / "run")


def test_resume_on_another_generator_version_is_refused(tmp_path):
    config = tiny_run(steps=1)
    train(config, tmp_path / "run")
    summary = tmp_path / "run" / "last.json"
    assert json.loads(summary.read_text())["synthetic_version"] == SYNTHETIC_VERSION
    summary.write_text(json.dumps({"step": 1}))
    with pytest.raises(UserError, match="generator an older version, not of version"):
        train(replace(config, optim=replace(config.optim, max_steps=2)), tmp_path / "run", resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = trainer_module.Losses.forward

    def poisoned(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            result.terms["loss_ce"] = result.terms["loss_ce"] * float("nan")
        return result

    monkeypatch.setattr(trainer_module.Losses, "forward", poisoned)
    with pytest.raises(
        TrainingError, match=r"loss is nan at step 3 \(loss_ce nan\); .*last good checkpoint .*\(step 2\)"
    ):
        train(tiny_run(steps=5), tmp_path / "run")
    assert load_training_state(tmp_path / "run/last.safetensors").step == 2


def test_contrastive_stage_starts_from_stage_one_and_trains_on_pasted_outliers(tmp_path):
    stage1 = train(tiny_run(steps=1), tmp_path / "stage1")
    config = tiny_run(steps=2)
    config = replace(
        config,
        data=replace(config.data, outlier_pool="synthetic", anomaly_mix_probability=1.0),
        loss=replace(config.loss, outlier=OutlierLossConfig(variant="corrected")),
        train=replace(config.train, init=str(stage1)),
    )
    start = trainer_module.build_model(config).state_dict()
    for key, value in load_model(stage1).state_dict().items():
        assert torch.equal(start[key], value), key
    train(config, tmp_path / "stage2")
    terms = (tmp_path / "stage2/log.csv").read_text()
    assert "loss_outlier" in terms
    example = trainer_module.TrainingData(config.data, 19, config.train.seed).example(0)
    assert example.outliers.any(), "AnomalyMix with probability 1 must paste an outlier"


def test_periodic_validation_and_logs(tmp_path):
    config = tiny_run(steps=2)
    config = replace(
        config,
        data=replace(config.data, val="synthetic:test?n=2&size=64x128"),
        train=replace(config.train, val_every=1),
    )
    train(config, tmp_path / "run")
    summary = json.loads((tmp_path / "run/last.json").read_text())
    assert summary["step"] == 2
    assert 0 <= summary["val_miou"] <= 1 and 0 < summary["val_auprc"] <= 1 and 0 <= summary["val_fpr95"] <= 1
    assert len((tmp_path / "run/log.csv").read_text().splitlines()) == 3
    assert list((tmp_path / "run/tensorboard").glob("events.*")), "TensorBoard events were not written"


@pytest.mark.parametrize("damage", ["no header", "torn header", "empty"])
def test_a_log_whose_header_a_kill_lost_gets_it_back(tmp_path, damage):
    config = tiny_run(steps=2)
    train(config, tmp_path / "run")
    log = tmp_path / "run" / "log.csv"
    header, *rows = log.read_text().splitlines(keepends=True)
    assert header.startswith("step,loss") and len(rows) == 2
    log.write_text({"no header": "".join(rows), "torn header": "step,lo", "empty": ""}[damage])
    train(replace(config, optim=replace(config.optim, max_steps=3)), tmp_path / "run", resume=True)
    lines = log.read_text().splitlines()
    assert lines[0] == header.strip()
    expected_steps = ["1", "2", "3"] if damage == "no header" else ["3"]
    assert [line.split(",")[0] for line in lines[1:]] == expected_steps


@pytest.mark.parametrize("kind", ["bce", "rba"])
def test_every_outlier_loss_trains_from_the_contrastive_recipe(tmp_path, kind):
    """One configuration for the outlier loss: replacing it in the shipped contrastive recipe gives
    a trainable run whose loss has the kind's own defaults (RbA's margin 5, no margin for BCE)."""
    recipe = load_recipe("synthetic_cpu_contrastive", [f"loss.outlier={{kind: {kind}}}"])
    assert recipe.loss.outlier.resolved_margin == {"bce": None, "rba": 5.0}[kind]
    config = tiny_run(steps=1)
    config = replace(
        config,
        data=replace(config.data, outlier_pool="synthetic", anomaly_mix_probability=1.0),
        loss=replace(config.loss, outlier=recipe.loss.outlier),
    )
    train(config, tmp_path / "run")
    with open(tmp_path / "run/log.csv", newline="") as log:
        (row,) = list(csv.DictReader(log))
    value = ast.literal_eval(row["terms"])["loss_outlier"]
    assert math.isfinite(value) and value > 0


def test_panoptic_run_validates_with_the_recipe_mining(tmp_path):
    """A panoptic run's validation reports PQ and PQ unknown with the run's mining settings: the
    numbers equal those of `evaluate --task ops` with the same settings on the same model."""
    config = tiny_run(steps=1)
    config = replace(
        config,
        data=replace(config.data, target="panoptic", val="synthetic:test?n=2&size=64x128"),
        mining=MiningConfig(num_components=2, iterations=40, overlap="coverage"),
    )
    checkpoint = train(config, tmp_path / "run")
    summary = json.loads((tmp_path / "run/last.json").read_text())
    payload = evaluate(
        EvaluateConfig(
            model=str(checkpoint),
            datasets=("synthetic:test?n=2&size=64x128",),
            methods=("mask2anomaly",),
            out=tmp_path / "eval",
            tasks=("ops",),
            examples=0,
            open_set=OpenSetOptions(panoptic=OpenSetPanoptic(num_components=2, iterations=40, overlap="coverage")),
            device="cpu",
        )
    )
    (entry,) = payload["datasets"].values()
    paper = entry["open_panoptic"]["paper"]
    assert summary["val_pq"] == paper["all"]["pq"] and summary["val_pq_unknown"] == paper["unknown"]["pq"]
    assert payload["mining"]["overlap"] == "coverage" and payload["mining"]["num_components"] == 2
