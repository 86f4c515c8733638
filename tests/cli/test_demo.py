"""The interim demo writes its predictions and a page that shows them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mask2anomaly.cli.main import main


def test_demo_writes_maps_and_report(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--images", "2", "--size", "64x128"]) == 0
    page = (tmp_path / "report.html").read_text()
    names = sorted(p.name.removesuffix("_mask2anomaly.npy") for p in tmp_path.glob("*_mask2anomaly.npy"))
    assert len(names) == 2
    for name in names:
        assert f'src="{name}_mask2anomaly.png"' in page
        score = np.load(tmp_path / f"{name}_mask2anomaly.npy")
        assert score.shape == (64, 128) and np.isfinite(score).all()
        assert Image.open(tmp_path / f"{name}_semantic.png").size == (128, 64)
    assert "untrained" in page
