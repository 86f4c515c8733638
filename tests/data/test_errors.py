"""Bad input gives one clear line naming the file; ``skip_bad`` / ``--skip-bad`` continue and list it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mask2anomaly import data
from mask2anomaly.cli.main import main
from mask2anomaly.errors import UserError


@pytest.fixture
def copy_ra21(shared: Path, tmp_path: Path) -> Path:
    """A copy of the first three RoadAnomaly21 pairs in the validation layout."""
    src = shared / "validation" / "RoadAnomaly21"
    dst = tmp_path / "ra21"
    for sub in ("images", "labels_masks"):
        (dst / sub).mkdir(parents=True)
        for i in range(3):
            shutil.copyfile(src / sub / f"{i}.png", dst / sub / f"{i}.png")
    return dst


def _one_line(err: pytest.ExceptionInfo[UserError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_truncated_image(copy_ra21: Path) -> None:
    image = copy_ra21 / "images" / "1.png"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    reader = data.open("validation", copy_ra21)
    with pytest.raises(UserError) as err:
        reader[reader.names.index("1")]
    message = _one_line(err)
    assert str(image) in message and "cannot decode image" in message
    report = reader.check(skip_bad=True)
    assert report.num_images == 3
    assert len(report.problems) == 1 and str(image) in report.problems[0]


def test_truncated_jpeg_road_anomaly(shared: Path, tmp_path: Path) -> None:
    src = shared / "RoadAnomaly"
    names = json.loads((src / "frame_list.json").read_text())[:2]
    (tmp_path / "frames").mkdir()
    for name in names:
        shutil.copyfile(src / "frames" / name, tmp_path / "frames" / name)
        shutil.copytree(src / "frames" / f"{Path(name).stem}.labels", tmp_path / "frames" / f"{Path(name).stem}.labels")
    (tmp_path / "frame_list.json").write_text(json.dumps(names))
    jpg = tmp_path / "frames" / names[0]
    jpg.write_bytes(jpg.read_bytes()[:5000])
    with pytest.raises(UserError) as err:
        data.open("road_anomaly", tmp_path)[0]
    assert str(jpg) in _one_line(err)


def test_label_of_wrong_size(copy_ra21: Path) -> None:
    label = copy_ra21 / "labels_masks" / "2.png"
    Image.open(label).resize((640, 360), Image.Resampling.NEAREST).save(label)
    reader = data.open("validation", copy_ra21)
    with pytest.raises(UserError) as err:
        reader[reader.names.index("2")]
    message = _one_line(err)
    assert str(label) in message and "640x360" in message and "1280x720" in message and "2.png" in message


def test_unexpected_label_values(copy_ra21: Path) -> None:
    label = copy_ra21 / "labels_masks" / "0.png"
    arr = np.asarray(Image.open(label)).copy()
    arr[:5, :5] = 7
    Image.fromarray(arr).save(label)
    with pytest.raises(UserError) as err:
        data.open("validation", copy_ra21).check()
    message = _one_line(err)
    assert str(label) in message and "unexpected label values 7" in message


def test_missing_label_and_orphan_label(copy_ra21: Path) -> None:
    (copy_ra21 / "labels_masks" / "1.png").unlink()
    with pytest.raises(UserError) as err:
        data.open("validation", copy_ra21)
    assert "no label file" in _one_line(err) and "1.png" in str(err.value)
    reader = data.open("validation", copy_ra21, skip_bad=True)
    assert reader.names == ["0", "2"] and len(reader.problems) == 1
    (copy_ra21 / "images" / "1.png").unlink()
    (copy_ra21 / "images" / "0.png").unlink()
    with pytest.raises(UserError) as err:
        data.open("validation", copy_ra21)
    assert "label has no image" in _one_line(err) and "0.png" in str(err.value)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels_masks").mkdir()
    with pytest.raises(UserError) as err:
        data.open("validation", tmp_path)
    assert "no samples found" in _one_line(err) and str(tmp_path / "images") in str(err.value)
    with pytest.raises(UserError) as err:
        data.open("validation", tmp_path / "nowhere")
    assert "folder not found" in _one_line(err)
    for name in ("cityscapes", "road_anomaly", "smiyc_obstacle", "lost_and_found", "streethazards"):
        with pytest.raises(UserError) as err:
            data.open(name, tmp_path / "nowhere")
        assert "nowhere" in _one_line(err)
    with pytest.raises(UserError) as err:
        data.open("coco_panoptic", tmp_path / "nowhere.json")
    assert "nowhere.json" in _one_line(err)


def test_unknown_name_and_option(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown dataset 'nope'; valid names: cityscapes"):
        data.open("nope", tmp_path)
    with pytest.raises(UserError, match="bad option"):
        data.open_spec(f"validation:{tmp_path}?colour=red")
    with pytest.raises(UserError, match="expected NAME:PATH"):
        data.open_spec("validation")


def test_cli_data_check(copy_ra21: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    assert main(["data", "check", "--dataset", f"validation:{copy_ra21}", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["num_images"] == 3 and report["problems"] == []
    expected: dict[str, int] = {}
    for i in range(3):
        values, counts = np.unique(np.asarray(Image.open(copy_ra21 / "labels_masks" / f"{i}.png")), return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            expected[str(v)] = expected.get(str(v), 0) + c
    assert report["label_values"] == expected

    image = copy_ra21 / "images" / "1.png"
    image.write_bytes(image.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["data", "check", "--dataset", f"validation:{copy_ra21}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(image) in err and err.startswith("mask2anomaly data: error:")
    assert main(["data", "check", "--dataset", f"validation:{copy_ra21}", "--skip-bad", "--json", str(out)]) == 1
    assert "skipped:" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["num_images"] == 3 and len(report["problems"]) == 1 and str(image) in report["problems"][0]
