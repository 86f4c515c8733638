"""``train --data`` takes a folder written by ``make-synthetic`` and trains on exactly its images."""

from __future__ import annotations

import yaml

from mask2anomaly.cli.main import main
from mask2anomaly.data import open_spec
from mask2anomaly.data.synthetic import generate_scene


def test_train_on_a_make_synthetic_folder(tmp_path):
    folder = tmp_path / "bench"
    args = ["make-synthetic", str(folder), "--train", "2", "--val", "1", "--test", "0", "--outliers", "2"]
    assert main([*args, "--size", "64x128", "--seed", "5"]) == 0
    out = tmp_path / "run"
    small = ["optim.batch_size=1", "data.crop_size=[64, 96]", "data.short_edge=[56, 72]", "train.log_every=1"]
    command = ["train", "--recipe", "synthetic_cpu", "--data", str(folder), "--out", str(out), "--max-steps", "1"]
    assert main([*command, *[a for item in small for a in ("--set", item)], "--device", "cpu"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["train"] == f"cityscapes:{folder / 'cityscapes'}?split=train"
    assert saved["data"]["val"] == f"cityscapes:{folder / 'cityscapes'}?split=val"
    reader = open_spec(saved["data"]["train"])
    assert len(reader) == 2
    expected = generate_scene("train", 0, size=(64, 128), seed=5)
    assert (reader[0].image == expected.image).all()
    assert (out / "last.safetensors").is_file()
