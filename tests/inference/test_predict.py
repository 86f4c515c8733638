"""``predict``: every task and method in one pass, outputs at the image's size and consistent with
the scores, unique output names for colliding inputs, and no silent empty run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mask2anomaly import save_model
from mask2anomaly.data.coco_panoptic import decode_panoptic_png
from mask2anomaly.data.synthetic import generate_scene
from mask2anomaly.errors import UserError
from mask2anomaly.inference import InputSize, OpenSetOptions, PredictConfig, predict
from mask2anomaly.models import MaskTransformer
from tests.models.tiny import tiny_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    model = root / "tiny.safetensors"
    save_model(MaskTransformer(tiny_config("global_masked", num_classes=19)), model)
    images = root / "images"
    images.mkdir()
    for i, size in enumerate([(70, 150), (96, 128)]):
        Image.fromarray(generate_scene("test", i, size=size).image).save(images / f"{i}.png")
    (images / "broken.png").write_bytes(b"not an image")
    return model, images


def run_predict(model, source, out, **changes):
    return predict(PredictConfig(model=str(model), input=source, out=out, device="cpu", **changes))


@pytest.mark.parametrize("short_side", [None, 48])
def test_anomaly_maps_at_image_resolution(setup, tmp_path, short_side):
    model, images = setup
    with pytest.warns(UserWarning, match=r"broken\.png"):
        result = run_predict(
            model, images, tmp_path, methods=("msp", "mask2anomaly+refine"), input_size=InputSize(short_side=short_side)
        )
    assert result.num_images == 2 and len(result.skipped) == 1
    for stem, size in (("0", (70, 150)), ("1", (96, 128))):
        for method in ("msp", "mask2anomaly+refine"):
            score = np.load(tmp_path / f"{stem}_{method}.npy")
            assert score.shape == size and score.dtype == np.float32 and np.isfinite(score).all()
            assert Image.open(tmp_path / f"{stem}_{method}.jpg").size == (size[1], size[0])
    assert json.loads((tmp_path / "inputs.json").read_text()) == {"0": "0.png", "1": "1.png", "broken": "broken.png"}


def test_all_tasks_in_one_pass_agree_with_the_scores(setup, tmp_path):
    model, images = setup
    run_predict(model, images / "0.png", tmp_path / "scores", methods=("rba", "msp"))
    scores = {m: np.load(tmp_path / f"scores/0_{m}.npy") for m in ("rba", "msp")}
    thresholds = {m: float(np.median(s)) for m, s in scores.items()}
    options = OpenSetOptions(threshold=thresholds, minings=("none",))
    run_predict(
        model,
        images / "0.png",
        tmp_path / "all",
        methods=("rba", "msp"),
        tasks=("anomaly", "oss", "ops"),
        open_set=options,
    )
    for method, score in scores.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"all/0_{method}.npy"), score)
        labels = np.array(Image.open(tmp_path / f"all/0_{method}_oss.png"))
        np.testing.assert_array_equal(labels == 19, score > np.float32(thresholds[method]))
        assert labels[score <= thresholds[method]].max() < 19
    info = json.loads((tmp_path / "all/panoptic_none.json").read_text())["annotations"][0]
    ids = decode_panoptic_png(tmp_path / "all" / info["file_name"])
    assert ids.shape == (70, 150)
    counted = {int(k): int(v) for k, v in zip(*np.unique(ids, return_counts=True), strict=True) if k}
    assert counted == {s["id"]: s["area"] for s in info["segments_info"]}


def test_colliding_names_get_their_own_outputs(setup, tmp_path):
    model, images = setup
    folder = tmp_path / "in"
    folder.mkdir()
    image = np.asarray(Image.open(images / "0.png"))
    for name in ("x.png", "x.jpg", "a b.png", "a_b.png"):
        Image.fromarray(image).save(folder / name)
    result = run_predict(model, folder, tmp_path / "out", methods=("msp",))
    assert result.num_images == 4
    written = sorted(p.name for p in (tmp_path / "out").glob("*_msp.npy"))
    assert len(written) == 4
    inputs = json.loads((tmp_path / "out/inputs.json").read_text())
    assert sorted(inputs.values()) == ["a b.png", "a_b.png", "x.jpg", "x.png"]


def test_nothing_readable_is_an_error(setup, tmp_path):
    model, images = setup
    with pytest.raises(UserError, match="no image could be read"), pytest.warns(UserWarning):
        run_predict(model, images / "broken.png", tmp_path)
    with pytest.raises(UserError, match="exactly one of --threshold"):
        run_predict(model, images, tmp_path / "x", tasks=("oss",))
