"""Every real dataset in ../shared/data opens with the right count, pairing and label values."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mask2anomaly import data
from mask2anomaly.data.base import UNKNOWN, UNKNOWN_CATEGORY, VOID
from mask2anomaly.data.classes import LABEL_ID_TO_TRAIN_ID

VALIDATION_SETS = [
    # (name, folder, pairs, (W, H), extension)
    ("validation", "fs_static", 30, (2048, 1024), ".jpg"),
    ("validation", "RoadAnomaly21", 10, (1280, 720), ".png"),
    ("validation", "FS_LostFound", 20, (2048, 1024), ".png"),
    ("fishyscapes_static", "fs_static", 30, (2048, 1024), ".jpg"),
    ("fishyscapes_laf", "FS_LostFound", 20, (2048, 1024), ".png"),
]


@pytest.mark.parametrize(("name", "folder", "pairs", "size", "ext"), VALIDATION_SETS)
def test_validation_layout(shared: Path, name: str, folder: str, pairs: int, size: tuple[int, int], ext: str) -> None:
    root = shared / "validation" / folder
    reader = data.open(name, root)
    assert len(reader) == pairs
    assert sorted(reader.names, key=int) == [str(i) for i in range(pairs)]
    for item in reader.items:
        assert item.image.suffix == ext
        assert item.labels["anomaly"] == root / "labels_masks" / f"{item.image.stem}.png"
    first = reader[0]
    assert first.image.shape == (size[1], size[0], 3) and first.image.dtype == np.uint8
    raw = np.asarray(Image.open(root / "labels_masks" / f"{first.name}.png"))
    np.testing.assert_array_equal(first.anomaly, raw)


@pytest.mark.parametrize("folder", ["RoadAnomaly21", "FS_LostFound"])
def test_validation_check_histogram_matches_files(shared: Path, folder: str) -> None:
    root = shared / "validation" / folder
    report = data.open("validation", root).check()
    expected: dict[int, int] = {}
    for path in sorted((root / "labels_masks").glob("*.png")):
        values, counts = np.unique(np.asarray(Image.open(path)), return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            expected[v] = expected.get(v, 0) + c
    assert report.label_values == expected
    assert set(expected) == {0, 1, VOID}
    assert report.problems == ()


def test_road_anomaly_original_release(shared: Path) -> None:
    root = shared / "RoadAnomaly"
    reader = data.open("road_anomaly", root)
    listed = json.loads((root / "frame_list.json").read_text())
    assert len(reader) == len(listed) == 60
    assert reader.names == [Path(n).stem for n in listed]
    assert sum("instances" in item.labels for item in reader.items) == 46
    for index in (0, 17, 59):
        sample = reader[index]
        raw = np.asarray(Image.open(root / "frames" / f"{sample.name}.labels" / "labels_semantic.png"))
        assert set(np.unique(raw).tolist()) == {0, 2}
        np.testing.assert_array_equal(sample.anomaly, (raw == 2).astype(np.uint8))
        assert sample.image.shape == (720, 1280, 3)


def test_cityscapes_fixture_decodes(shared: Path) -> None:
    root = shared / "cityscapes_fixture"
    reader = data.open("cityscapes", root, split="val")
    assert reader.names == ["frankfurt/frankfurt_000000_000294"]
    sample = reader[0]
    gt = root / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_"
    label_ids = np.asarray(Image.open(f"{gt}labelIds.png"))
    train_ids = np.asarray(Image.open(f"{gt}labelTrainIds.png"))
    raw = np.asarray(Image.open(f"{gt}instanceIds.png")).astype(np.int64)
    np.testing.assert_array_equal(sample.semantic, train_ids)
    # The label table maps the labelIds file onto the labelTrainIds file. The fixture's three label
    # files were downscaled separately, so they disagree on a few boundary pixels (77 of 32768).
    assert np.mean(LABEL_ID_TO_TRAIN_ID[label_ids] == train_ids) > 0.995
    # Instance ids: things are labelId*1000+k, consistent with the labelIds file.
    things = raw >= 1000
    assert np.mean(raw[things] // 1000 == label_ids[things]) > 0.98
    # Reading labelIds alone (no trainIds file) goes through the same table.
    assert set(np.unique(LABEL_ID_TO_TRAIN_ID[label_ids]).tolist()) == set(np.unique(train_ids).tolist())
    raw_label = np.where(raw >= 1000, raw // 1000, raw)
    ids, counts = np.unique(raw[LABEL_ID_TO_TRAIN_ID[raw_label] != VOID], return_counts=True)
    assert {s.id: s.area for s in sample.segments} == dict(zip(ids.tolist(), counts.tolist(), strict=True))
    by_id = {s.id: s for s in sample.segments}
    assert {i for i in by_id if i >= 1000} == {24000, 24001, 24002, 24003, 26000, 26001, 26002}
    assert all(by_id[i].is_thing and by_id[i].category in (11, 13) for i in by_id if i >= 1000)
    assert by_id[7].category == 0 and not by_id[7].is_thing  # road stuff segment


def _decode_rgb_ids(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def test_coco_panoptic_sample_segment_ids_match_json(shared: Path) -> None:
    root = shared / "coco_panoptic_sample" / "sample_data"
    js = json.loads((root / "panoptic_examples.json").read_text())
    reader = data.open("coco_panoptic", root / "panoptic_examples.json")
    assert len(reader) == 2
    names = [c["name"] for c in js["categories"]]
    for ann in js["annotations"]:
        sample = reader[reader.names.index(Path(ann["file_name"]).stem)]
        ids = _decode_rgb_ids(root / "panoptic_examples" / ann["file_name"])
        np.testing.assert_array_equal(sample.instances, ids)
        present = set(np.unique(ids).tolist()) - {0}
        assert present == {s["id"] for s in ann["segments_info"]}
        for s in ann["segments_info"]:
            assert int((ids == s["id"]).sum()) == s["area"]
            cat = next(i for i, c in enumerate(js["categories"]) if c["id"] == s["category_id"])
            assert set(np.unique(sample.semantic[ids == s["id"]]).tolist()) == {cat}
        assert (sample.semantic[ids == 0] == VOID).all()
        assert sorted((s.id, s.area) for s in sample.segments) == sorted(
            (s["id"], s["area"]) for s in ann["segments_info"]
        )
    assert reader.class_names == tuple(names)


def test_coco_open_set_split_removes_unknown_classes(shared: Path, tmp_path: Path) -> None:
    root = shared / "coco_panoptic_sample" / "sample_data"
    js = json.loads((root / "panoptic_examples.json").read_text())
    car = next(c["id"] for c in js["categories"] if c["name"] == "car")
    truck = next(c["id"] for c in js["categories"] if c["name"] == "truck")
    relabelled = None
    for ann in js["annotations"]:
        for s in ann["segments_info"]:
            if s["category_id"] == truck:
                s["category_id"], relabelled = car, (Path(ann["file_name"]).stem, s["id"])
    assert relabelled is not None
    (tmp_path / "panoptic_examples").symlink_to(root / "panoptic_examples")
    (tmp_path / "input_images").symlink_to(root / "input_images")
    (tmp_path / "panoptic_examples.json").write_text(json.dumps(js))
    name, seg_id = relabelled

    ev = data.open("coco_panoptic", tmp_path / "panoptic_examples.json", unknown="5", mode="eval")
    tr = data.open("coco_panoptic", tmp_path / "panoptic_examples.json", unknown="5", mode="train")
    known = [c["name"] for c in js["categories"] if c["name"] not in ("car", "cow", "pizza", "toilet")]
    assert ev.class_names == tuple(known) and len(known) == 129
    s_ev, s_tr = ev[ev.names.index(name)], tr[tr.names.index(name)]
    where = s_ev.instances == seg_id
    assert where.any()
    assert (s_ev.semantic[where] == UNKNOWN).all() and (s_ev.anomaly[where] == 1).all()
    assert next(s for s in s_ev.segments if s.id == seg_id).category == UNKNOWN_CATEGORY
    assert (s_tr.semantic[where] == VOID).all() and (s_tr.instances[where] == 0).all()
    assert seg_id not in {s.id for s in s_tr.segments}
    horse = known.index("horse")
    horse_id = next(c["id"] for c in js["categories"] if c["name"] == "horse")
    horse_seg = next(s["id"] for a in js["annotations"] for s in a["segments_info"] if s["category_id"] == horse_id)
    assert (s_ev.semantic[s_ev.instances == horse_seg] == horse).all()


def test_readers_pickle_for_worker_processes(shared: Path) -> None:
    readers = [
        data.open("validation", shared / "validation" / "RoadAnomaly21"),
        data.open("fishyscapes_laf", shared / "validation" / "FS_LostFound"),
        data.open("road_anomaly", shared / "RoadAnomaly"),
        data.open("cityscapes", shared / "cityscapes_fixture"),
        data.open("coco_panoptic", shared / "coco_panoptic_sample" / "sample_data" / "panoptic_examples.json"),
        data.open("synthetic", "test", n=2, size="64x128"),
    ]
    for reader in readers:
        copy = pickle.loads(pickle.dumps(reader))
        assert copy.names == reader.names
        np.testing.assert_array_equal(copy[len(copy) - 1].image, reader[len(reader) - 1].image)


def test_decoded_arrays_are_writable(shared: Path) -> None:
    sample = data.open("cityscapes", shared / "cityscapes_fixture")[0]
    for array in (sample.image, sample.semantic, sample.instances):
        assert array.flags.writeable
    assert data.open("validation", shared / "validation" / "RoadAnomaly21")[0].anomaly.flags.writeable
