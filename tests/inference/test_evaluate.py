"""``evaluate``: the written maps equal the methods' formulas applied to the raw model output, the
metrics equal sklearn on those maps, the report shows the numbers of ``metrics.json``, sharding
changes nothing, unreadable images are skipped and listed, and the report renders in a real
browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from mask2anomaly import data as datasets
from mask2anomaly import load_model, save_model
from mask2anomaly.data.synthetic import generate_scene
from mask2anomaly.errors import UserError
from mask2anomaly.inference import EvaluateConfig, evaluate
from mask2anomaly.models import MaskTransformer
from mask2anomaly.viz.report import percent
from tests.inference import independent
from tests.models.tiny import tiny_config
from tests.training.test_trainer import _free_port

DATASET = "synthetic:test?n=3&size=64x128"
METHODS = ("msp", "mask2anomaly", "mask2anomaly+refine+tta", "rba")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(MaskTransformer(tiny_config("global_masked", num_classes=19)), path)
    return path


def config(model: Path, out: Path, **changes) -> EvaluateConfig:
    values = dict(model=str(model), datasets=(DATASET,), methods=METHODS, out=out, device="cpu")
    values.update(changes)
    return EvaluateConfig(**values)


def test_maps_are_the_methods_and_metrics_equal_sklearn(model_path, tmp_path):
    payload = evaluate(config(model_path, tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(payload))
    results = payload["datasets"]["synthetic_test"]["anomaly"]
    assert list(results) == list(METHODS)
    maps = tmp_path / "maps/synthetic_test"
    reader = datasets.open_spec(DATASET)
    for index in range(3):
        sample = reader[index]
        expected = independent.scores(load_model(str(model_path)).eval(), sample.image)
        for method in ("mask2anomaly", "msp"):
            np.testing.assert_allclose(np.load(maps / method / f"{sample.name}.npy"), expected[method], atol=2e-5)
    for method in METHODS:
        scores, labels = [], []
        for label_file in sorted((maps / "labels").glob("*.png")):
            label = np.array(Image.open(label_file)).ravel()
            score = np.load(maps / method / f"{label_file.stem}.npy").ravel()
            scores.append(score[label != 255])
            labels.append(label[label != 255] == 1)
        y, s = np.concatenate(labels), np.concatenate(scores).astype(np.float64)
        pixel = results[method]["pixel"]
        assert pixel["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
        assert pixel["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    report = (tmp_path / "report.html").read_text()
    for method in METHODS:
        row = re.search(rf"<tr><td>{re.escape(method)}</td>(.*?)</tr>", report).group(1)
        cells = [re.sub("<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", row)]
        pixel, component = results[method]["pixel"], results[method]["component"]
        expected = [pixel["auprc"], pixel["fpr95"], pixel["auroc"], component["siou"], component["ppv"]]
        assert cells[:5] == [percent(v) for v in expected]
    assert "| msp |" in (tmp_path / "results.md").read_text()


def test_three_tasks_in_one_pass_equal_three_runs(model_path, tmp_path):
    spec = "coco_panoptic:{}?unknown=synthetic"
    from mask2anomaly.data.synthetic import write_benchmark

    write_benchmark(tmp_path / "data", train=0, val=0, test=3, outliers=0, size=(64, 128), seed=0)
    dataset = spec.format(tmp_path / "data/openset_panoptic/panoptic_test.json")
    common = dict(datasets=(dataset,), methods=("msp", "rba"), examples=0)
    open_set = {"threshold": {"msp": 0.5, "rba": -3.0}}
    from mask2anomaly.inference import OpenSetOptions

    options = OpenSetOptions(**open_set, minings=("paper", "rba"))
    together = evaluate(
        config(model_path, tmp_path / "all", tasks=("anomaly", "oss", "ops"), open_set=options, **common)
    )
    alone = {
        task: evaluate(
            config(
                model_path,
                tmp_path / task,
                tasks=(task,),
                open_set=options if task != "anomaly" else OpenSetOptions(),
                **common,
            )
        )
        for task in ("anomaly", "oss", "ops")
    }
    (key,) = together["datasets"]
    for task, name in (("anomaly", "anomaly"), ("oss", "open_set_semantic"), ("ops", "open_panoptic")):
        assert together["datasets"][key][name] == alone[task]["datasets"][key][name]


def _shard_worker(rank: int, world: int, port: int, model: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    evaluate(config(Path(model), Path(out)))


def test_two_processes_equal_one(model_path, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers, so that every forward pass rounds alike
    try:
        single = evaluate(config(model_path, tmp_path / "single"))
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
        payload = evaluate(config(model_path, tmp_path / "out", datasets=(f"validation:{folder}",), methods=("msp",)))
    assert any("1.png" in str(w.message) for w in caught)
    entry = payload["datasets"]["validation_set"]
    assert entry["images"] == 2 and entry["anomaly"]["msp"]["num_images"] == 2
    assert len(entry["skipped"]) == 1 and "1.png" in entry["skipped"][0]
    assert "1.png" in (tmp_path / "out/report.html").read_text()
    assert "1.png" in (tmp_path / "out/results.md").read_text()
    with pytest.raises(UserError, match=r"1\.png"):
        evaluate(
            config(model_path, tmp_path / "strict", datasets=(f"validation:{folder}",), methods=("msp",), strict=True)
        )


def test_a_later_run_only_counts_its_own_maps(model_path, tmp_path):
    evaluate(config(model_path, tmp_path, methods=("msp",)))
    payload = evaluate(config(model_path, tmp_path, methods=("msp",), max_images=1))
    assert payload["datasets"]["synthetic_test"]["anomaly"]["msp"]["num_images"] == 1
    first = datasets.open_spec(DATASET).names[0]
    assert sorted(p.name for p in (tmp_path / "maps/synthetic_test/msp").iterdir()) == [f"{first}.npy"]


def test_model_and_method_that_do_not_fit(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "five_classes.safetensors"
    save_model(MaskTransformer(tiny_config("masked", num_classes=5)), path)
    with pytest.raises(UserError, match="refine"):
        evaluate(config(path, tmp_path / "out", methods=("mask2anomaly+refine",)))


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium(model_path, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    evaluate(config(model_path, tmp_path))
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
    model = f"espnetv2:{weights}"
    payload = evaluate(config(model, tmp_path, datasets=(spec,), methods=("msp", "entropy"), max_images=2))
    entry = payload["datasets"]["validation_RoadAnomaly21"]
    assert payload["input_size"] == "resized to 1024x512, the model's training size"
    for method in ("msp", "entropy"):
        assert entry["anomaly"][method]["num_images"] == 2
        assert 0 < entry["anomaly"][method]["pixel"]["auprc"] <= 1
    with pytest.raises(UserError, match="need a mask transformer"):
        evaluate(config(model, tmp_path / "x", datasets=(spec,), methods=("mask2anomaly",), max_images=1))
