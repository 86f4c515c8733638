"""``evaluate``: metrics equal an independent computation, sharding changes nothing, bad images are
skipped and listed, and the report renders in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from mask2anomaly import save_model
from mask2anomaly.data.synthetic import generate_scene
from mask2anomaly.engine.evaluate import evaluate
from mask2anomaly.errors import UserError
from mask2anomaly.models import MaskTransformer
from tests.engine.test_trainer import _free_port
from tests.models.tiny import tiny_config

DATASET = "synthetic:test?n=3&size=64x128"
METHODS = ["msp", "mask2anomaly", "mask2anomaly+refine+tta", "rba"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(MaskTransformer(tiny_config("global_masked", num_classes=19)), path)
    return path


def test_metrics_equal_sklearn_on_the_written_maps(model_path, tmp_path):
    results = evaluate(str(model_path), [DATASET], METHODS, tmp_path)
    assert set(results) == {"synthetic_test"} and set(results["synthetic_test"]) == set(METHODS)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored == json.loads(json.dumps(results))
    labels_dir = tmp_path / "maps/synthetic_test/labels"
    for method in METHODS:
        scores, labels = [], []
        for label_file in sorted(labels_dir.glob("*.png")):
            label = np.array(Image.open(label_file)).ravel()
            score = np.load(tmp_path / "maps/synthetic_test" / method / f"{label_file.stem}.npy").ravel()
            scores.append(score[label != 255])
            labels.append(label[label != 255] == 1)
        y, s = np.concatenate(labels), np.concatenate(scores).astype(np.float64)
        pixel = results["synthetic_test"][method]["pixel"]
        assert pixel["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
        assert pixel["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    table = (tmp_path / "results.md").read_text()
    assert all(f"| synthetic_test | {m} |" in table for m in METHODS)


def _shard_worker(rank: int, world: int, port: int, model: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    evaluate(model, [DATASET], METHODS, out, device="cpu")


def test_two_processes_equal_one(model_path, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers, so that every forward pass rounds alike
    try:
        single = evaluate(str(model_path), [DATASET], METHODS, tmp_path / "single")
    finally:
        torch.set_num_threads(threads)
    torch.multiprocessing.spawn(
        _shard_worker, args=(2, _free_port(), str(model_path), str(tmp_path / "sharded")), nprocs=2, join=True
    )
    assert json.loads((tmp_path / "sharded/metrics.json").read_text()) == json.loads(json.dumps(single))


def _validation_folder(root: Path, n: int = 3) -> Path:
    for i in range(n):
        scene = generate_scene("test", i, size=(64, 128))
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels_masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image).save(root / "images" / f"{i}.png")
        Image.fromarray(scene.anomaly).save(root / "labels_masks" / f"{i}.png")
    return root


def test_unreadable_image_is_skipped_and_listed(model_path, tmp_path):
    folder = _validation_folder(tmp_path / "set")
    broken = folder / "images/1.png"
    broken.write_bytes(broken.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = evaluate(str(model_path), [f"validation:{folder}"], ["msp"], tmp_path / "out")
    assert any("1.png" in str(w.message) for w in caught)
    assert results["validation_set"]["msp"]["num_images"] == 2
    assert "1.png" in (tmp_path / "out/report.html").read_text()
    with pytest.raises(UserError, match=r"1\.png"):
        evaluate(str(model_path), [f"validation:{folder}"], ["msp"], tmp_path / "strict", strict=True)


def test_model_and_method_that_do_not_fit(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "five_classes.safetensors"
    save_model(MaskTransformer(tiny_config("masked", num_classes=5)), path)
    with pytest.raises(UserError, match="refine"):
        evaluate(str(path), [DATASET], ["mask2anomaly+refine"], tmp_path / "out")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium(model_path, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    evaluate(str(model_path), [DATASET], METHODS, tmp_path)
    shot = tmp_path / "report.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,1400",
        f"--screenshot={shot}",
    ]
    subprocess.run([browser, *flags, (tmp_path / "report.html").as_uri()], check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (1400, 1200)
    # The page shows images and coloured curves, not a blank or error page.
    assert pixels.std() > 20
    colourful = (np.abs(pixels[..., 0] - pixels[..., 2]) > 60).mean()
    assert colourful > 0.01


def test_per_pixel_model_on_real_images(shared_data, tmp_path):
    weights = shared_data.parent / "weights/espnetv2/espnetv2_s_2.0_city_1024x512.pth"
    if not weights.exists():
        pytest.skip("ESPNetv2 weights not found")
    spec = f"validation:{shared_data / 'validation/RoadAnomaly21'}"
    results = evaluate(f"espnetv2:{weights}", [spec], ["msp", "entropy"], tmp_path, max_images=2)
    for method in ("msp", "entropy"):
        assert results["validation_RoadAnomaly21"][method]["num_images"] == 2
        assert 0 < results["validation_RoadAnomaly21"][method]["pixel"]["auprc"] <= 1
    with pytest.raises(UserError, match="need a mask transformer"):
        evaluate(f"espnetv2:{weights}", [spec], ["mask2anomaly"], tmp_path / "x", max_images=1)
