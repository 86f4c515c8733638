"""Panoptic quality against a brute-force panopticapi-style loop, on synthetic segment maps and on
the real COCO panoptic sample (read from the shared data folder, skipped when absent)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from mask2anomaly.errors import UserError
from mask2anomaly.metrics import PanopticQuality, UndefinedMetricWarning, evaluate_panoptic
from mask2anomaly.metrics.panoptic import rgb_to_id
from tests.metrics import naive

CATEGORIES = [
    {"id": 1, "name": "car", "isthing": 1},
    {"id": 2, "name": "person", "isthing": 1},
    {"id": 3, "name": "road", "isthing": 0},
    {"id": 4, "name": "sky", "isthing": 0},
]


def random_image(rng, unknown_pred=False):
    """GT and prediction maps of random rectangles (with crowd and void) and their segments."""
    gt = np.zeros((20, 24), np.int64)
    gt_segments = []
    for sid in range(1, 7):
        y, x, h, w = rng.integers(0, 16), rng.integers(0, 20), rng.integers(3, 9), rng.integers(3, 9)
        gt[y : y + h, x : x + w] = sid
    for sid in range(1, 7):
        area = int(np.sum(gt == sid))
        if area:
            gt_segments.append(
                {"id": sid, "category_id": int(rng.integers(1, 5)), "iscrowd": int(rng.random() < 0.15), "area": area}
            )
    pred = gt.copy()
    pred[rng.random(gt.shape) < 0.25] = 0
    shift = rng.integers(-2, 3)
    pred = np.roll(pred, shift, axis=1) + 10 * (pred > 0)
    pred[rng.integers(0, 20), :] = 99
    categories = {s["id"]: s["category_id"] for s in gt_segments}
    pred_segments = []
    for pid in np.unique(pred):
        if pid == 0:
            continue
        cat = categories.get(int(pid) - 10, int(rng.integers(1, 5)))
        if rng.random() < 0.15:
            cat = int(rng.integers(1, 5))
        if unknown_pred and cat == 2:
            cat = -1
        pred_segments.append({"id": int(pid), "category_id": cat})
    return gt, gt_segments, pred, pred_segments


@pytest.mark.parametrize("unknown", [False, True])
def test_synthetic_maps_equal_brute_force(unknown):
    rng = np.random.default_rng(11)
    images = [random_image(rng, unknown_pred=unknown) for _ in range(6)]
    unknown_ids = frozenset({2}) if unknown else frozenset()
    metric = PanopticQuality(CATEGORIES, unknown_ids)
    for gt, gt_segments, pred, pred_segments in images:
        metric.update(gt, gt_segments, pred, pred_segments)
    result = metric.compute()
    ref = naive.panoptic_quality(images, CATEGORIES, unknown_ids)
    groups = ("all", "things", "stuff") + (("unknown",) if unknown else ())
    for group in groups:
        ours = getattr(result, group)
        assert (ours.pq, ours.sq, ours.rq, ours.n) == pytest.approx(ref[group], abs=1e-12), group
    assert (result.unknown is None) == (not unknown)


def test_merge_equals_sequential():
    rng = np.random.default_rng(12)
    images = [random_image(rng) for _ in range(4)]
    whole, first, second = (PanopticQuality(CATEGORIES) for _ in range(3))
    for i, image in enumerate(images):
        whole.update(*image)
        (first if i < 2 else second).update(*image)
    first.merge(second)
    assert first.compute() == whole.compute()


def test_prediction_errors_are_user_errors():
    gt = np.ones((4, 4), np.int64)
    segments = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 16}]
    metric = PanopticQuality(CATEGORIES)
    with pytest.raises(UserError, match="in the PNG but not in the JSON"):
        metric.update(gt, segments, np.full((4, 4), 5), [], source="p.png")
    with pytest.raises(UserError, match="in the JSON but not in the PNG"):
        metric.update(gt, segments, gt, [{"id": 1, "category_id": 1}, {"id": 9, "category_id": 1}])
    with pytest.raises(UserError, match="unexpected category_id -1"):
        metric.update(gt, segments, gt, [{"id": 1, "category_id": -1}])
    with pytest.raises(UserError, match="differ"):
        metric.update(gt, segments, np.ones((4, 5), np.int64), [{"id": 1, "category_id": 1}])


def test_empty_group_is_nan_with_warning():
    metric = PanopticQuality(CATEGORIES)
    gt = np.ones((4, 4), np.int64)
    metric.update(gt, [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 16}], gt, [{"id": 1, "category_id": 1}])
    with pytest.warns(UndefinedMetricWarning, match="stuff"):
        result = metric.compute()
    assert result.things.pq == 1.0 and math.isnan(result.stuff.pq)


# --- real COCO panoptic sample --------------------------------------------------------------------


def coco_sample(shared_data):
    root = shared_data / "coco_panoptic_sample" / "sample_data"
    if not (root / "panoptic_examples.json").is_file():
        pytest.skip(f"COCO panoptic sample not found under {root}")
    return root / "panoptic_examples.json", root / "panoptic_examples"


def id_to_rgb(ids):
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def perturb(gt_json, gt_dir, out_dir, unknown_names=()):
    """Write a perturbed prediction of the sample: shifted masks, a dropped segment, a relabelled
    segment, a spurious segment; unknown categories predicted as -1. Returns its JSON path."""
    data = json.loads(gt_json.read_text())
    unknown_ids = {c["id"] for c in data["categories"] if c["name"] in unknown_names}
    rng = np.random.default_rng(0)
    out_dir.mkdir()
    annotations = []
    for ann in data["annotations"]:
        ids = rgb_to_id(np.asarray(Image.open(gt_dir / ann["file_name"]).convert("RGB"))).astype(np.int64)
        ids = np.roll(ids, 3, axis=1)
        segments = [dict(s) for s in ann["segments_info"]]
        dropped = segments.pop(int(rng.integers(len(segments))))
        ids[ids == dropped["id"]] = 0
        segments[0]["category_id"] = segments[1]["category_id"]
        ids[:10, :40] = 4242
        segments.append({"id": 4242, "category_id": segments[2]["category_id"]})
        present = set(np.unique(ids).tolist())
        pred_segments = []
        for s in segments:
            if s["id"] in present:
                cat = -1 if s["category_id"] in unknown_ids else s["category_id"]
                pred_segments.append({"id": s["id"], "category_id": cat})
        Image.fromarray(id_to_rgb(ids)).save(out_dir / ann["file_name"])
        annotations.append({"image_id": ann["image_id"], "file_name": ann["file_name"], "segments_info": pred_segments})
    path = out_dir / "pred.json"
    path.write_text(json.dumps({"annotations": annotations}))
    return path


def load_images(gt_json, gt_dir, pred_json, pred_dir):
    gt_data, pred_data = json.loads(gt_json.read_text()), json.loads(pred_json.read_text())
    preds = {a["image_id"]: a for a in pred_data["annotations"]}
    images = []
    for ann in gt_data["annotations"]:
        pred = preds[ann["image_id"]]
        gt_ids = rgb_to_id(np.asarray(Image.open(gt_dir / ann["file_name"]).convert("RGB")))
        pred_ids = rgb_to_id(np.asarray(Image.open(pred_dir / pred["file_name"]).convert("RGB")))
        images.append((gt_ids, ann["segments_info"], pred_ids, pred["segments_info"]))
    return images, gt_data["categories"]


@pytest.mark.slow
def test_coco_sample_ground_truth_against_itself_is_perfect(shared_data):
    gt_json, gt_dir = coco_sample(shared_data)
    result = evaluate_panoptic(gt_json, gt_dir, gt_json, gt_dir)
    for group in (result.all, result.things, result.stuff):
        assert (group.pq, group.sq, group.rq) == (1.0, 1.0, 1.0) and group.n > 0


@pytest.mark.slow
@pytest.mark.parametrize("unknown_names", [(), ("person", "car")])
def test_coco_sample_perturbed_equals_brute_force(shared_data, tmp_path, unknown_names):
    gt_json, gt_dir = coco_sample(shared_data)
    pred_json = perturb(gt_json, gt_dir, tmp_path / "pred", unknown_names)
    result = evaluate_panoptic(gt_json, gt_dir, pred_json, tmp_path / "pred", unknown_names)
    images, categories = load_images(gt_json, gt_dir, pred_json, tmp_path / "pred")
    unknown_ids = {c["id"] for c in categories if c["name"] in unknown_names}
    ref = naive.panoptic_quality(images, categories, unknown_ids)
    groups = ("all", "things", "stuff") + (("unknown",) if unknown_names else ())
    for group in groups:
        ours = getattr(result, group)
        assert (ours.pq, ours.sq, ours.rq, ours.n) == pytest.approx(ref[group], abs=1e-12), group
    assert 0 < result.all.pq < 1
