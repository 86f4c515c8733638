"""AnomalyMix pasting and its outlier pools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mask2anomaly import data
from mask2anomaly.data.anomaly_mix import (
    CocoOutlierPool,
    Cutout,
    FolderOutlierPool,
    SyntheticOutlierPool,
    anomaly_mix,
    paste,
)
from mask2anomaly.data.base import UNKNOWN
from mask2anomaly.errors import UserError


def _inlier(seed: int = 0):
    return data.open("synthetic", "train", n=1, seed=seed, size="64x128")[0]


def test_paste_labels_exactly_the_object_pixels() -> None:
    sample = _inlier()
    mask = np.zeros((10, 12), bool)
    mask[2:8, 3:9] = True
    cut = Cutout("c", np.full((10, 12, 3), 7, np.uint8), mask)
    out = paste(sample, cut, 60, 120)  # partly outside: clipped
    where = np.zeros(sample.size, bool)
    where[62:64, 123:128] = True
    np.testing.assert_array_equal(out.semantic == UNKNOWN, where | (sample.semantic == UNKNOWN))
    assert (out.image[where] == 7).all()
    np.testing.assert_array_equal(out.image[~where], sample.image[~where])
    np.testing.assert_array_equal(out.semantic[~where], sample.semantic[~where])
    assert (out.instances[where] == 0).all()
    ids, counts = np.unique(out.instances, return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    before = {s.id for s in sample.segments}
    assert {s.id: s.area for s in out.segments} == {i: a for i, a in area.items() if i in before}


def test_anomaly_mix_probability_and_placement() -> None:
    sample = _inlier()
    pool = SyntheticOutlierPool(5, seed=0, max_size=32)
    rng = np.random.default_rng(0)
    assert anomaly_mix(sample, pool, rng, probability=0.0) is sample
    pasted = [anomaly_mix(sample, pool, np.random.default_rng(k), probability=1.0) for k in range(20)]
    for out in pasted:
        added = (out.semantic == UNKNOWN).sum()
        assert added > 0 and out.image.shape == sample.image.shape
    rows = [np.flatnonzero((o.semantic == UNKNOWN).any(axis=1)).mean() for o in pasted]
    assert np.std(rows) > 3  # positions vary
    hits = sum(anomaly_mix(sample, pool, np.random.default_rng(k), probability=0.2) is not sample for k in range(400))
    assert 50 <= hits <= 110


def test_folder_pool_reads_the_synthetic_outliers(synthetic_root: Path) -> None:
    pool = FolderOutlierPool(synthetic_root / "outliers")
    assert len(pool) == 4
    memory = SyntheticOutlierPool(4, seed=7, max_size=32)
    for i in range(4):
        a, b = pool[i], memory[i]
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.image[a.mask], b.image[b.mask])
    assert len(FolderOutlierPool(synthetic_root / "outliers", limit=2)) == 2
    with pytest.raises(UserError, match="folder not found"):
        FolderOutlierPool(synthetic_root / "nowhere")


def test_folder_pool_in_the_official_coco_mask_layout(tmp_path: Path) -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[5:9, 10:20] = 254
    (tmp_path / "annotations" / "ood_seg_train2017").mkdir(parents=True)
    (tmp_path / "train2017").mkdir()
    Image.fromarray(mask).save(tmp_path / "annotations" / "ood_seg_train2017" / "000000000009.png")
    Image.fromarray(np.full((20, 30, 3), 40, np.uint8)).save(tmp_path / "train2017" / "000000000009.jpg")
    pool = FolderOutlierPool(tmp_path, image_dir="train2017", mask_dir="annotations/ood_seg_train2017")
    assert len(pool) == 1 and pool[0].mask.shape == (4, 10) and pool[0].mask.all()
    Image.fromarray(mask).save(tmp_path / "annotations" / "ood_seg_train2017" / "000000000010.png")
    with pytest.raises(UserError, match=r"000000000010\.png: outlier mask has no image"):
        FolderOutlierPool(tmp_path, image_dir="train2017", mask_dir="annotations/ood_seg_train2017")


def test_coco_pool_class_filter(shared: Path) -> None:
    root = shared / "coco_panoptic_sample" / "sample_data"
    reader = data.open("coco_panoptic", root / "panoptic_examples.json")
    js = json.loads((root / "panoptic_examples.json").read_text())
    names = {c["id"]: c["name"] for c in js["categories"]}
    with pytest.raises(UserError, match="no image qualifies"):
        CocoOutlierPool(reader)  # both sample images contain a person and are < 480 px
    pool = CocoOutlierPool(reader, min_side=300, excluded=("truck",))
    allowed = [a for a in js["annotations"] if not any(names[s["category_id"]] == "truck" for s in a["segments_info"])]
    assert len(pool) == len(allowed) == 1
    cut = pool[0]
    ann = allowed[0]
    things = {c["id"] for c in js["categories"] if c["isthing"]}
    assert cut.mask.sum() == sum(s["area"] for s in ann["segments_info"] if s["category_id"] in things)
    x0 = min(s["bbox"][0] for s in ann["segments_info"] if s["category_id"] in things)
    x1 = max(s["bbox"][0] + s["bbox"][2] for s in ann["segments_info"] if s["category_id"] in things)
    assert cut.mask.shape[1] == x1 - x0
