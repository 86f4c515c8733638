"""``mask2anomaly make-synthetic`` and ``mask2anomaly data check`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mask2anomaly.cli.main import main


def test_make_synthetic_then_check_every_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    args = ["--train", "2", "--val", "1", "--test", "3", "--outliers", "2", "--size", "64x128", "--seed", "5"]
    assert main(["make-synthetic", str(out), *args]) == 0
    assert "wrote" in capsys.readouterr().out
    specs = {
        f"cityscapes:{out / 'cityscapes'}?split=train": (2, {0, 1, 2, 10}),
        f"cityscapes:{out / 'cityscapes'}?split=val": (1, {0, 1, 2, 10}),
        f"validation:{out / 'anomaly'}": (3, {0, 1}),
        f"cityscapes:{out / 'openset_semantic'}?split=test&open_set=true": (3, {0, 1}),
        f"coco_panoptic:{out / 'openset_panoptic' / 'panoptic_test.json'}?unknown=synthetic": (3, {0, 1}),
    }
    for spec, (count, must_have) in specs.items():
        report_path = tmp_path / "report.json"
        assert main(["data", "check", "--dataset", spec, "--json", str(report_path)]) == 0, spec
        report = json.loads(report_path.read_text())
        assert report["num_images"] == count and report["problems"] == []
        assert must_have <= {int(v) for v in report["label_values"]}, spec
    assert main(["make-synthetic", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["make-synthetic", str(tmp_path / "other"), "--size", "big"]) == 2
    assert "size must be HxW" in capsys.readouterr().err
