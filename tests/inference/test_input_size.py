"""A per-pixel model runs at the input size it was trained at, and its scores come back at the
image's size; ``--size image`` / ``InputSize(own=True)`` runs it at full resolution instead. Checked
against the model's raw forward pass on the resized image, upsampled by hand."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mask2anomaly.inference import FileSource, Predictor, run
from mask2anomaly.inference.consumers.writers import ScoreMapWriter
from mask2anomaly.inference.predictor import InputSize
from mask2anomaly.methods import parse_method
from mask2anomaly.models.espnetv2 import ESPNetV2Config, ESPNetV2Segmentation

TRAINED = (64, 128)
IMAGE = (96, 200)


def msp_by_hand(model, image: np.ndarray, network: tuple[int, int]) -> np.ndarray:
    """1 - max softmax of the forward pass at ``network`` size, bilinearly resized to the image."""
    resized = np.asarray(Image.fromarray(image).resize((network[1], network[0]), Image.Resampling.BILINEAR))
    pixels, _ = model.preprocess([resized])
    with torch.no_grad():
        logits = model(pixels)
    score = 1 - logits.softmax(1).amax(1, keepdim=True)
    return F.interpolate(score, size=image.shape[:2], mode="bilinear")[0, 0].numpy()


def scores(model, image_path, out, input_size: InputSize) -> np.ndarray:
    run(
        FileSource(image_path),
        Predictor(model, torch.device("cpu"), input_size),
        [parse_method("msp")],
        [ScoreMapWriter(out)],
    )
    return np.load(out / "x_msp.npy")


def test_trained_size_by_default_and_full_resolution_on_request(tmp_path):
    torch.manual_seed(0)
    model = ESPNetV2Segmentation(ESPNetV2Config(scale=0.5, input_size=TRAINED)).eval()
    with torch.no_grad():  # spread the random network's logits so that the two sizes differ clearly
        for parameter in model.parameters():
            parameter.mul_(1.5)
    image = np.random.default_rng(0).integers(0, 256, (*IMAGE, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    default = scores(model, tmp_path / "x.png", tmp_path / "a", InputSize())
    assert default.shape == IMAGE
    np.testing.assert_allclose(default, msp_by_hand(model, image, TRAINED), atol=1e-5)
    full = scores(model, tmp_path / "x.png", tmp_path / "b", InputSize(own=True))
    np.testing.assert_allclose(full, msp_by_hand(model, image, IMAGE), atol=1e-5)
    assert np.abs(full - default).max() > 1e-2
    assert Predictor(model, torch.device("cpu"), InputSize(own=True)).describe_size() == "at their own size"
