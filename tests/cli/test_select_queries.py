"""``select-queries`` writes a selection that Maskomaly accepts."""

from __future__ import annotations

import json

import numpy as np
import torch

from mask2anomaly import save_model
from mask2anomaly.cli.main import main
from mask2anomaly.engine.inference import open_model
from mask2anomaly.methods import parse_method
from mask2anomaly.models import MaskTransformer
from tests.models.tiny import tiny_config


def test_selected_queries_feed_maskomaly(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "m.safetensors"
    save_model(MaskTransformer(tiny_config("masked", num_classes=19)), model)
    out = tmp_path / "q.json"
    assert (
        main(
            [
                "select-queries",
                "--model",
                str(model),
                "--dataset",
                "synthetic:test?n=2&size=64x128",
                "--top-k",
                "3",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    selection = json.loads(out.read_text())
    assert len(selection["queries"]) == 3 and selection["images"] == 2
    ious = np.array(selection["mean_iou"])
    assert min(ious[selection["queries"]]) >= max(np.delete(ious, selection["queries"]), default=0)
    method = parse_method("maskomaly", anomaly_queries=tuple(selection["queries"]), rejected_queries=())
    image = (np.random.default_rng(0).random((64, 128, 3)) * 255).astype(np.uint8)
    score = open_model(str(model)).predict(image, [method]).scores[method.name]
    assert score.shape == (64, 128) and np.isfinite(score).all()
