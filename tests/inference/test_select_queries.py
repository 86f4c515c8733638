"""``select-queries`` on a model whose queries follow the image's colours: the query painted on the
anomalies wins, with the IoU a direct computation gives, and the choice feeds Maskomaly."""

from __future__ import annotations

import json
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mask2anomaly.cli.main import main
from mask2anomaly.inference import DatasetSource, FileSource, Predictor, run, select_queries
from mask2anomaly.inference.consumers.writers import ScoreMapWriter
from mask2anomaly.methods import parse_method
from mask2anomaly.models.loading import save_model
from tests.inference.scripted import BLUE, GREEN, RED, ScriptedMaskModel, painted


def write_set(root, boxes_per_image):
    (root / "images").mkdir(parents=True)
    (root / "labels_masks").mkdir()
    for i, boxes in enumerate(boxes_per_image):
        image = painted(64, 128, boxes)
        labels = np.zeros((64, 128), np.uint8)
        for colour, (top, left, bottom, right) in boxes:
            if colour == RED:
                labels[top:bottom, left:right] = 1
        labels[:4] = 255
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(labels).save(root / "labels_masks" / f"{i}.png")
    return f"validation:{root}"


def direct_iou(model, image, labels, query):
    """IoU of the query's mask (logits upsampled bilinearly, sigmoid > 0.9) with the anomalies,
    void pixels left out, from the model's raw output."""
    pixels, _ = model.preprocess([image])
    with torch.no_grad():
        masks = F.interpolate(model(pixels).mask_logits, size=image.shape[:2], mode="bilinear")[0, query]
    on = (masks.sigmoid() > 0.9).numpy() & (labels != 255)
    anomaly = labels == 1
    return (on & anomaly).sum() / (on | anomaly).sum()


def test_the_query_on_the_anomalies_wins(tmp_path):
    boxes = [
        [(RED, (16, 24, 40, 56)), (BLUE, (20, 80, 44, 112))],
        [(RED, (28, 8, 60, 40)), (GREEN, (4, 64, 32, 128))],
        [(GREEN, (8, 8, 24, 24))],
    ]
    spec = write_set(tmp_path / "set", boxes)
    model = ScriptedMaskModel().eval()
    selection = select_queries(Predictor(model, torch.device("cpu")), spec, top_k=2)
    assert selection.queries == (2, 0) and selection.num_images == 2
    source = DatasetSource(spec)
    expected = np.mean([direct_iou(model, source.load(i).image, source.load(i).sample.anomaly, 2) for i in (0, 1)])
    assert float(selection.mean_iou[2]) == expected > 0.8
    assert float(selection.mean_iou[0]) == float(selection.mean_iou[1]) == float(selection.mean_iou[3]) == 0.0


def test_the_command_writes_a_selection_maskomaly_takes(tmp_path):
    spec = write_set(tmp_path / "set", [[(RED, (16, 24, 40, 56))]])
    model_file = tmp_path / "scripted.safetensors"
    save_model(ScriptedMaskModel(), model_file)
    out = tmp_path / "q.json"
    args = ["select-queries", "--model", str(model_file), "--dataset", spec, "--top-k", "1", "--json", str(out)]
    args += ["--device", "cpu"]
    assert main(args) == 0
    selection = json.loads(out.read_text())
    assert len(selection["queries"]) == 1 and selection["images"] == 1 and len(selection["mean_iou"]) == 5
    method = parse_method("maskomaly", anomaly_queries=(2,), rejected_queries=())
    writer = ScoreMapWriter(tmp_path / "maps")
    run(
        FileSource(tmp_path / "set/images/0.png"),
        Predictor(ScriptedMaskModel().eval(), torch.device("cpu")),
        [method],
        [writer],
    )
    score = np.load(tmp_path / "maps/0_maskomaly.npy")
    assert score.shape == (64, 128) and np.isfinite(score).all()
    assert score[30, 40] > score[10, 100] and math.isfinite(float(score.mean()))
