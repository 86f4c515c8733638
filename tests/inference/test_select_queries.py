"""``select-queries`` on a model whose queries follow the image's colours: the query painted on the
anomalies wins, with the IoU a direct computation gives, and the choice feeds Maskomaly."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mask2anomaly.cli.main import main
from mask2anomaly.errors import UserError
from mask2anomaly.inference import DatasetSource, FileSource, Predictor, run, select_queries
from mask2anomaly.inference.consumers.writers import ScoreMapWriter
from mask2anomaly.methods import parse_method
from mask2anomaly.models.config import SWIN_PRESETS
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


def test_predict_takes_the_selection_file_or_the_indices(tmp_path):
    """``--maskomaly-queries FILE`` (select-queries' JSON) and the same indices written out give the
    same map, other queries another one, and the authors' default queries are refused on this model."""
    spec = write_set(tmp_path / "set", [[(RED, (16, 24, 40, 56)), (BLUE, (20, 80, 44, 112))]])
    model_file = tmp_path / "m.safetensors"
    torch.manual_seed(0)
    save_model(ScriptedMaskModel(), model_file)
    selection = tmp_path / "q.json"
    base = ["--model", str(model_file), "--device", "cpu"]
    assert main(["select-queries", *base, "--dataset", spec, "--top-k", "2", "--json", str(selection)]) == 0
    chosen = json.loads(selection.read_text())["queries"]
    others = [q for q in range(5) if q not in chosen][:2]
    image = str(tmp_path / "set/images/0.png")
    maps = {}
    for name, value in (("file", str(selection)), ("indices", ",".join(map(str, chosen))), ("others", others)):
        value = value if isinstance(value, str) else ",".join(map(str, value))
        out = tmp_path / name
        args = ["predict", *base, "--input", image, "--out", str(out), "--methods", "maskomaly"]
        assert main([*args, "--maskomaly-queries", value]) == 0
        maps[name] = np.load(out / "0_maskomaly.npy")
    np.testing.assert_array_equal(maps["file"], maps["indices"])
    assert not np.array_equal(maps["file"], maps["others"])
    refused = ["predict", *base, "--input", image, "--out", str(tmp_path / "d"), "--methods", "maskomaly"]
    assert main(refused) == 2


def _model_config(preset: str, queries: int = 100, classes: int = 19) -> SimpleNamespace:
    return SimpleNamespace(
        backbone=SimpleNamespace(swin=SWIN_PRESETS[preset]), num_queries=queries, num_classes=classes
    )


def test_the_authors_queries_fit_only_the_authors_model():
    method = parse_method("maskomaly")
    method.check_model(_model_config("swin_large"))
    for other in (_model_config("swin_base"), _model_config("swin_large", 200), _model_config("swin_large", 100, 12)):
        with pytest.raises(UserError, match=r"select-queries .* --maskomaly-queries"):
            method.check_model(other)
    parse_method("maskomaly", anomaly_queries=(1, 2)).check_model(_model_config("swin_base"))
