"""The synthetic benchmark: deterministic, consistent across its layouts, and not trivial."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from sklearn.metrics import average_precision_score

from mask2anomaly import data
from mask2anomaly.data.base import UNKNOWN, UNKNOWN_CATEGORY, VOID
from mask2anomaly.data.classes import LABEL_ID_TO_TRAIN_ID, THING_TRAIN_IDS
from mask2anomaly.data.synthetic import (
    ANOMALY_MATERIALS,
    ANOMALY_SHAPES,
    MATERIALS,
    OUTLIER_MATERIALS,
    OUTLIER_SHAPES,
    generate_outlier,
    generate_scene,
    write_benchmark,
)

SIZE = (64, 128)


def _digest(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_byte_identical_per_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_benchmark(tmp_path / name, train=2, val=1, test=2, outliers=2, size=SIZE, seed=3)
    write_benchmark(tmp_path / "c", train=2, val=1, test=2, outliers=2, size=SIZE, seed=4)
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a == b and len(a) == 2 * 4 + 4 + 2 * 6 + 1 + 2 * 2 + 1
    assert a.keys() == c.keys()
    differing = [k for k in a if k != "meta.json" and a[k] != c[k]]
    assert len(differing) > 0.9 * (len(a) - 1)


def test_image_depends_only_on_seed_split_index() -> None:
    direct = generate_scene("test", 5, seed=1, size=SIZE)
    np.random.seed(123)
    for i in range(5):
        generate_scene("train", i, seed=1, size=SIZE)
    again = generate_scene("test", 5, seed=1, size=SIZE)
    assert direct.image.tobytes() == again.image.tobytes()
    assert direct.train_ids.tobytes() == again.train_ids.tobytes()
    other_split = generate_scene("val", 5, seed=1, size=SIZE)
    assert direct.image.tobytes() != other_split.image.tobytes()


def test_labels_consistent_across_layouts(synthetic_root: Path) -> None:
    root = synthetic_root
    mem = data.open("synthetic", "test", n=6, seed=7, size="64x128")
    anomaly = data.open("validation", root / "anomaly")
    semantic = data.open("cityscapes", root / "openset_semantic", split="test", open_set=True)
    panoptic = data.open("coco_panoptic", root / "openset_panoptic" / "panoptic_test.json", unknown="synthetic")
    assert len(mem) == len(anomaly) == len(semantic) == len(panoptic) == 6
    for i in range(6):
        ref = mem[i]
        a = anomaly[anomaly.names.index(str(i))]
        s = semantic[semantic.names.index(f"synth/{ref.name}")]
        p = panoptic[panoptic.names.index(ref.name)]
        for other in (a, s, p):
            np.testing.assert_array_equal(other.image, ref.image)
        np.testing.assert_array_equal(a.anomaly, ref.anomaly)
        np.testing.assert_array_equal(s.anomaly, ref.anomaly)
        np.testing.assert_array_equal(p.anomaly, ref.anomaly)
        np.testing.assert_array_equal(s.semantic, ref.semantic)
        np.testing.assert_array_equal(p.semantic, ref.semantic)
        np.testing.assert_array_equal(p.instances, ref.instances)
        assert sorted(p.segments, key=lambda x: x.id) == sorted(ref.segments, key=lambda x: x.id)
        # anomaly map and semantic map agree: 1 exactly where the unknown label is
        np.testing.assert_array_equal(ref.anomaly == 1, ref.semantic == UNKNOWN)
        np.testing.assert_array_equal(ref.anomaly == VOID, ref.semantic == VOID)
        unknown_ids = {seg.id for seg in ref.segments if seg.category == UNKNOWN_CATEGORY}
        np.testing.assert_array_equal(np.isin(ref.instances, list(unknown_ids)), ref.semantic == UNKNOWN)


def test_cityscapes_layout_of_train_split(synthetic_root: Path) -> None:
    reader = data.open("cityscapes", synthetic_root / "cityscapes", split="train")
    assert len(reader) == 3
    gt = synthetic_root / "cityscapes" / "gtFine" / "train" / "synth"
    for i, name in enumerate(reader.names):
        sample = reader[i]
        scene = generate_scene("train", i, seed=7, size=SIZE)
        assert name == f"synth/{scene.name}"
        np.testing.assert_array_equal(sample.semantic, scene.train_ids)
        assert UNKNOWN not in sample.semantic
        label_ids = np.asarray(Image.open(gt / f"{scene.name}_gtFine_labelIds.png"))
        np.testing.assert_array_equal(LABEL_ID_TO_TRAIN_ID[label_ids], sample.semantic)
        raw = np.asarray(Image.open(gt / f"{scene.name}_gtFine_instanceIds.png")).astype(np.int64)
        things = raw >= 1000
        np.testing.assert_array_equal(raw[~things], label_ids[~things])  # stuff and void store the labelId
        np.testing.assert_array_equal(raw[things] // 1000, label_ids[things])
        assert np.isin(sample.semantic[things], list(THING_TRAIN_IDS)).all()
        assert not np.isin(sample.semantic[~things], list(THING_TRAIN_IDS)).any()
    meta = json.loads((synthetic_root / "meta.json").read_text())
    assert meta["seed"] == 7 and meta["counts"] == {"train": 3, "val": 2, "test": 6, "outliers": 4}
    assert meta["anomaly_materials"] == list(ANOMALY_MATERIALS) and meta["inlier_materials"] == list(MATERIALS)
    assert meta["outlier_materials"] == list(OUTLIER_MATERIALS)


def test_anomalies_on_road_of_all_sizes_and_not_found_by_colour() -> None:
    size = (128, 256)
    hist = np.zeros(16**3)
    for i in range(20):
        scene = generate_scene("train", i, seed=0, size=size)
        q = scene.image.astype(np.int64) // 16
        idx = q[..., 0] * 256 + q[..., 1] * 16 + q[..., 2]
        hist += np.bincount(idx[scene.train_ids != VOID], minlength=4096)
    log_p = np.log((hist + 1) / (hist.sum() + 4096))
    scores, labels, areas, touching_road, images_with_anomaly = [], [], [], 0, 0
    for i in range(40):
        scene = generate_scene("test", i, seed=0, size=size)
        q = scene.image.astype(np.int64) // 16
        valid = scene.anomaly != VOID
        scores.append(-log_p[q[..., 0] * 256 + q[..., 1] * 16 + q[..., 2]][valid])
        labels.append(scene.anomaly[valid])
        segs = [s for s in scene.segments() if s.category == UNKNOWN_CATEGORY]
        images_with_anomaly += bool(segs)
        for s in segs:
            areas.append(s.area)
            ring = ndimage.binary_dilation(scene.instance_ids == s.id, iterations=2)
            touching_road += bool((scene.train_ids[ring] == 0).any())
    labels_all = np.concatenate(labels)
    assert images_with_anomaly >= 36
    assert min(areas) < 30 and max(areas) > 1500
    assert touching_road >= 0.7 * len(areas)
    ap = average_precision_score(labels_all, np.concatenate(scores))
    # A colour-likelihood detector fit on inlier pixels does no better than chance (AP ~ base rate).
    assert ap < 2 * labels_all.mean()


def test_outlier_pool_shapes_and_materials_are_disjoint_from_test_anomalies() -> None:
    assert not set(ANOMALY_SHAPES) & set(OUTLIER_SHAPES)
    assert not set(ANOMALY_MATERIALS) & (set(MATERIALS) | set(OUTLIER_MATERIALS))
    assert not set(OUTLIER_MATERIALS) & set(MATERIALS)
    for i in range(10):
        image, mask = generate_outlier(i, seed=0, max_size=64)
        assert image.shape[:2] == mask.shape and mask.any() and mask.shape[0] <= 64
        assert (image[~mask] == 0).all()
