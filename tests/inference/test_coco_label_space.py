"""On a COCO-layout dataset the dataset's own categories say which classes are things: the panoptic
merge keeps two instances of one thing class apart, PQ counts them under things, and a model whose
classes do not match the dataset's is refused for the class-aware tasks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mask2anomaly.data import open_spec
from mask2anomaly.data.classes import CITYSCAPES
from mask2anomaly.data.coco_panoptic import encode_panoptic_png
from mask2anomaly.errors import UserError
from mask2anomaly.inference import DatasetSource, Predictor, run
from mask2anomaly.inference.consumers.panoptic import Mining, PanopticMetrics
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic
from mask2anomaly.models import MaskTransformerOutput
from tests.inference.scripted import BLUE, GREEN, K, ScriptedMaskModel, painted

DOG = 8
"""A thing class here (a stuff class, vegetation, in Cityscapes' label space)."""

GREEN_BOX, BLUE_BOX = (8, 8, 40, 48), (16, 72, 56, 120)


class TwoDogsModel(ScriptedMaskModel):
    """The scripted model with its blue query also predicting class 8 confidently, so that the green
    and the blue box are two queries of one class."""

    def forward(self, pixel_values: torch.Tensor, return_aux: bool | None = None) -> MaskTransformerOutput:
        out = super().forward(pixel_values, return_aux)
        logits = out.class_logits.clone()
        logits[:, 3] = -6.0
        logits[:, 3, DOG] = 6.0
        return MaskTransformerOutput(logits, out.mask_logits)


def write_coco(root: Path, num_categories: int = K) -> Path:
    """One 64x128 image: stuff class 0 everywhere, two "dog" instances (the green and blue boxes).
    Category ids are 101.. (not contiguous, not Cityscapes'); only index 8 and 12 are things."""
    image = painted(64, 128, [(GREEN, GREEN_BOX), (BLUE, BLUE_BOX)])
    ids = np.ones((64, 128), np.int32)
    for segment_id, (top, left, bottom, right) in ((2, GREEN_BOX), (3, BLUE_BOX)):
        ids[top:bottom, left:right] = segment_id
    (root / "images").mkdir(parents=True)
    (root / "panoptic_val").mkdir()
    Image.fromarray(image).save(root / "images" / "a.png")
    Image.fromarray(encode_panoptic_png(ids)).save(root / "panoptic_val" / "a.png")
    categories = [{"id": 101 + i, "name": f"class{i}", "isthing": int(i in (DOG, 12))} for i in range(num_categories)]
    segments = [
        {"id": 1, "category_id": 101, "iscrowd": 0, "area": int((ids == 1).sum())},
        {"id": 2, "category_id": 101 + DOG, "iscrowd": 0, "area": int((ids == 2).sum())},
        {"id": 3, "category_id": 101 + DOG, "iscrowd": 0, "area": int((ids == 3).sum())},
    ]
    payload = {
        "images": [{"id": 7, "file_name": "a.png", "height": 64, "width": 128}],
        "annotations": [{"image_id": 7, "file_name": "a.png", "segments_info": segments}],
        "categories": categories,
    }
    path = root / "panoptic_val.json"
    path.write_text(json.dumps(payload))
    return path


@pytest.fixture(scope="module")
def predictor():
    return Predictor(TwoDogsModel().eval(), torch.device("cpu"))


def test_reader_label_space_is_the_json_categories(tmp_path):
    reader = open_spec(f"coco_panoptic:{write_coco(tmp_path)}")
    assert reader.label_space.names == tuple(f"class{i}" for i in range(K))
    assert reader.label_space.things == frozenset({DOG, 12})


def test_two_instances_of_a_thing_class_stay_two_segments(tmp_path, predictor):
    """Under the dataset's categories the two dog queries give two segments and both match their
    ground-truth instance (things RQ 1); under Cityscapes' label space (where 8 is stuff, the old
    behaviour) they are merged into one segment that matches neither (IoU below 0.5 with each)."""
    spec = f"coco_panoptic:{write_coco(tmp_path)}"
    consumer = PanopticMetrics([Mining("none", OpenSetPanoptic(mining="none"))])
    run(DatasetSource(spec), predictor, [], [consumer])
    things = consumer.result()["none"]["things"]
    assert things["n"] == 1 and things["rq"] == 1.0 and things["sq"] > 0.9

    merged = PanopticMetrics([Mining("none", OpenSetPanoptic(mining="none"))])
    run(DatasetSource(spec), predictor, [], [merged], labels=CITYSCAPES)
    stuff_dog = merged.result()["none"]["stuff"]
    assert stuff_dog["rq"] < 1.0


def test_predicted_segments_of_the_thing_class(tmp_path, predictor):
    """The panoptic prediction itself: two segments of category 8, each one box (up to the corner
    pixels that the stride-4 masks round off)."""
    reader = open_spec(f"coco_panoptic:{write_coco(tmp_path)}")
    frame = predictor.context(reader[0].image, False)
    config = OpenSetPanoptic(mining="none", thing_ids=tuple(sorted(reader.label_space.things)))
    (prediction,) = config(frame.ctx)
    dogs = [s for s in prediction.segments if s["category_id"] == DOG]
    assert len(dogs) == 2 and all(s["isthing"] == 1 for s in dogs)
    for segment, (top, left, bottom, right) in zip(dogs, (GREEN_BOX, BLUE_BOX), strict=True):
        expected = torch.zeros(64, 128, dtype=torch.bool)
        expected[top:bottom, left:right] = True
        mine = prediction.ids == segment["id"]
        assert (mine & expected).sum() / (mine | expected).sum() > 0.99


def test_a_model_with_other_classes_is_refused(tmp_path, predictor):
    spec = f"coco_panoptic:{write_coco(tmp_path, num_categories=12)}"
    consumer = PanopticMetrics([Mining("none", OpenSetPanoptic(mining="none"))])
    with pytest.raises(UserError, match="the model predicts 19 classes but the dataset has 12 known classes"):
        run(DatasetSource(spec), predictor, [], [consumer])
