"""``predict``: outputs at the image resolution for every task, consistent with the scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mask2anomaly import save_model
from mask2anomaly.data.coco_panoptic import decode_panoptic_png
from mask2anomaly.data.synthetic import generate_scene
from mask2anomaly.engine.predict import predict
from mask2anomaly.errors import UserError
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


@pytest.mark.parametrize("short_side", [None, 48])
def test_anomaly_maps_at_image_resolution(setup, tmp_path, short_side):
    model, images = setup
    with pytest.warns(UserWarning, match=r"broken\.png"):
        written = predict(str(model), images, tmp_path, ["msp", "mask2anomaly+refine"], short_side=short_side)
    assert written == ["0.png", "1.png"]
    for stem, size in (("0", (70, 150)), ("1", (96, 128))):
        for method in ("msp", "mask2anomaly+refine"):
            score = np.load(tmp_path / f"{stem}_{method}.npy")
            assert score.shape == size and score.dtype == np.float32 and np.isfinite(score).all()
            assert Image.open(tmp_path / f"{stem}_{method}.png").size == (size[1], size[0])


def test_open_set_semantic_labels_follow_the_threshold(setup, tmp_path):
    model, images = setup
    predict(str(model), images / "0.png", tmp_path / "scores", ["rba"])
    score = np.load(tmp_path / "scores/0_rba.npy")
    threshold = float(np.median(score))
    predict(str(model), images / "0.png", tmp_path / "oss", ["rba"], task="oss", threshold=threshold)
    labels = np.array(Image.open(tmp_path / "oss/0_oss.png"))
    np.testing.assert_array_equal(labels == 19, score >= threshold)
    assert labels[score < threshold].max() < 19
    with pytest.raises(UserError, match="needs --threshold"):
        predict(str(model), images, tmp_path / "x", ["rba"], task="oss")


def test_open_set_panoptic_png_matches_json(setup, tmp_path):
    model, images = setup
    predict(str(model), images / "1.png", tmp_path, ["mask2anomaly"], task="ops", mining="none")
    info = json.loads((tmp_path / "panoptic.json").read_text())["annotations"][0]
    ids = decode_panoptic_png(tmp_path / "1_panoptic.png")
    assert ids.shape == (96, 128)
    counted = {int(k): int(v) for k, v in zip(*np.unique(ids, return_counts=True), strict=True) if k}
    assert counted == {s["id"]: s["area"] for s in info["segments_info"]}
