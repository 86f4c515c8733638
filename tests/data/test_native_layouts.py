"""Readers of layouts not in ../shared/data, on tiny files written here: names, pairing, value maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mask2anomaly import data
from mask2anomaly.data.base import UNKNOWN, VOID
from mask2anomaly.errors import UserError


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _image(h: int = 8, w: int = 12, value: int = 90) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_smiyc_native_layout(tmp_path: Path) -> None:
    label = np.zeros((8, 12), np.uint8)
    label[2:4, 3:6] = 1
    label[0] = VOID
    for name in ("validation0000", "validation0001"):
        _write(tmp_path / "images" / f"{name}.webp", _image())
        _write(tmp_path / "labels_masks" / f"{name}_labels_semantic.png", label)
        _write(tmp_path / "labels_masks" / f"{name}_labels_semantic_color.png", _image(value=200))
    _write(tmp_path / "images" / "test0000.webp", _image())
    reader = data.open("smiyc_obstacle", tmp_path)
    assert reader.names == ["validation0000", "validation0001"] and reader.unlabeled == 1
    np.testing.assert_array_equal(reader[1].anomaly, label)


def test_lost_and_found_layout(tmp_path: Path) -> None:
    fid = "04_Maurener_Weg_8_000000_000030"
    raw = np.zeros((8, 12), np.uint8)
    raw[4:] = 1
    raw[5:7, 2:4] = 2
    raw[5:7, 8:10] = 200
    instances = np.zeros((8, 12), np.uint16)
    instances[5:7, 2:4] = 3
    _write(tmp_path / "leftImg8bit" / "test" / "04_Maurener_Weg_8" / f"{fid}_leftImg8bit.png", _image())
    gt = tmp_path / "gtCoarse" / "test" / "04_Maurener_Weg_8"
    _write(gt / f"{fid}_gtCoarse_labelIds.png", raw)
    _write(gt / f"{fid}_gtCoarse_instanceIds.png", instances)
    sample = data.open("lost_and_found", tmp_path, split="test")[0]
    expected = np.full((8, 12), VOID, np.uint8)
    expected[raw == 1] = 0
    expected[raw >= 2] = 1
    np.testing.assert_array_equal(sample.anomaly, expected)
    assert sample.name == fid and set(np.unique(sample.instances).tolist()) == {0, 3}


def _streethazards_semantic(v: int) -> int:
    """The references' known classes, written out from their class lists: raw 1 "unlabeled" is
    class 0 "background", raw 4 "other" is void, the rest keep their order after it."""
    known = [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    return known.index(v) if v in known else UNKNOWN if v == 14 else VOID


def test_streethazards_label_mappings(tmp_path: Path) -> None:
    raw = np.arange(1, 15, dtype=np.uint8).repeat(2)[None, :].repeat(3, axis=0)
    _write(tmp_path / "test" / "images" / "test" / "t6" / "300.png", _image(3, 28))
    _write(tmp_path / "test" / "annotations" / "test" / "t6" / "300.png", raw)
    m2a = data.open("streethazards", tmp_path, split="t6")[0]
    dh = data.open_spec(f"streethazards:{tmp_path}?split=t6&labels=densehybrid")[0]
    row = raw[0]
    assert m2a.anomaly[0].tolist() == [VOID if v in (1, 4) else int(v == 14) for v in row]
    assert dh.anomaly[0].tolist() == [VOID if v == 4 else int(v == 14) for v in row]
    expected = [_streethazards_semantic(int(v)) for v in row]
    assert m2a.semantic[0].tolist() == expected and dh.semantic[0].tolist() == expected
    reader = data.open("streethazards", tmp_path, split="t6")
    assert reader.label_space.names[0] == "background" and "other" not in reader.label_space.names
    with pytest.raises(UserError, match="labels must be one of mask2anomaly, densehybrid"):
        data.open("streethazards", tmp_path, split="t6", labels="hendrycks")


def test_streethazards_training_splits(tmp_path: Path) -> None:
    raw = np.arange(1, 14, dtype=np.uint8).repeat(2)[None, :].repeat(3, axis=0)
    for part, subset, folder in (("train", "training", "t1-3"), ("train", "validation", "t4")):
        _write(tmp_path / part / "images" / subset / folder / "5.png", _image(3, 26))
        _write(tmp_path / part / "annotations" / subset / folder / "5.png", raw)
    for split in ("train", "val"):
        sample = data.open("streethazards", tmp_path, split=split)[0]
        assert sample.semantic[0].tolist() == [_streethazards_semantic(int(v)) for v in raw[0]]
    with pytest.raises(UserError, match="split must be one of train, val, t5, t6"):
        data.open("streethazards", tmp_path, split="t9")


def test_fishyscapes_laf_native_layout(tmp_path: Path) -> None:
    fid = "01_Hanns_Klemm_Str_45_000000_000080"
    label = np.zeros((8, 12), np.uint8)
    label[3:5, 3:5] = 1
    label[:2] = VOID
    _write(tmp_path / "labels" / "val" / f"{fid}_fishy-labels.png", label)
    laf = tmp_path / "laf"
    _write(laf / "leftImg8bit" / "train" / "01_Hanns_Klemm_Str_45" / f"{fid}_leftImg8bit.png", _image())
    reader = data.open("fishyscapes_laf", tmp_path, laf_root=laf)
    assert reader.names == [fid]
    np.testing.assert_array_equal(reader[0].anomaly, label)
