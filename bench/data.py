"""Throughput of the dataset readers, the synthetic generator, and AnomalyMix + training transforms.

Usage: ``python bench/data.py [--shared PATH] [--max-images N]``. Real sets are read from
``../shared/data`` next to the repository (or ``--shared`` / ``MASK2ANOMALY_SHARED_DATA``); missing
ones are skipped. Prints one row per layout: images, seconds, images per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mask2anomaly import data
from mask2anomaly.data.anomaly_mix import FolderOutlierPool, SyntheticOutlierPool, anomaly_mix
from mask2anomaly.data.synthetic import generate_scene, write_benchmark
from mask2anomaly.data.transforms import TrainTransform

DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _time(n: int, step: Callable[[int], object]) -> tuple[int, float]:
    start = time.perf_counter()
    for i in range(n):
        step(i)
    return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("MASK2ANOMALY_SHARED_DATA", DEFAULT_SHARED)))
    parser.add_argument("--max-images", type=int, default=20, help="images per row (default 20)")
    args = parser.parse_args()
    s, n_max = args.shared, args.max_images
    rows: list[tuple[str, str, int, float]] = []

    real = [
        ("validation", "validation/fs_static (2048x1024 jpg)", s / "validation" / "fs_static", {}),
        ("validation", "validation/RoadAnomaly21 (1280x720 png)", s / "validation" / "RoadAnomaly21", {}),
        ("fishyscapes_laf", "validation/FS_LostFound (2048x1024 png)", s / "validation" / "FS_LostFound", {}),
        ("road_anomaly", "RoadAnomaly (1280x720 jpg)", s / "RoadAnomaly", {}),
        ("cityscapes", "cityscapes_fixture (256x128)", s / "cityscapes_fixture", {"split": "val"}),
        (
            "coco_panoptic",
            "coco_panoptic_sample (640x~400)",
            s / "coco_panoptic_sample" / "sample_data" / "panoptic_examples.json",
            {},
        ),
    ]
    for name, label, root, options in real:
        if not root.exists():
            continue
        reader = data.open(name, root, **options)
        n, t = _time(min(n_max, len(reader)), lambda i, r=reader: r[i])
        rows.append((name, label, n, t))

    n, t = _time(n_max, lambda i: generate_scene("test", i, size=(256, 512)))
    rows.append(("synthetic", "generate in memory (256x512)", n, t))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synthetic"
        start = time.perf_counter()
        write_benchmark(out, train=n_max, val=0, test=n_max, outliers=n_max, size=(256, 512))
        rows.append(("make-synthetic", "write all layouts (256x512)", 2 * n_max, time.perf_counter() - start))
        layouts = [
            ("cityscapes", "synthetic cityscapes train", out / "cityscapes", {"split": "train"}),
            ("validation", "synthetic anomaly (validation)", out / "anomaly", {}),
            (
                "cityscapes",
                "synthetic open-set semantic",
                out / "openset_semantic",
                {"split": "test", "open_set": True},
            ),
            (
                "coco_panoptic",
                "synthetic open-set panoptic",
                out / "openset_panoptic" / "panoptic_test.json",
                {"unknown": "synthetic"},
            ),
        ]
        for name, label, root, options in layouts:
            reader = data.open(name, root, **options)
            n, t = _time(len(reader), lambda i, r=reader: r[i])
            rows.append((name, label, n, t))

        train = data.open("cityscapes", out / "cityscapes", split="train")
        samples = [train[i] for i in range(len(train))]
        pool = FolderOutlierPool(out / "outliers")
        rng = np.random.default_rng(0)
        cpu = TrainTransform(crop_size=(256, 512), short_edge=(128, 512))
        n, t = _time(len(samples), lambda i: cpu(anomaly_mix(samples[i], pool, rng, probability=1.0), rng))
        rows.append(("anomaly_mix+transform", "p=1, LSJ 128-512, crop 256x512", n, t))
    if (s / "validation" / "fs_static").exists():
        fs = data.open("validation", s / "validation" / "fs_static")
        samples = [fs[i] for i in range(min(5, len(fs)))]
        paper = TrainTransform()
        synthetic_pool = SyntheticOutlierPool(50)
        n, t = _time(len(samples), lambda i: paper(anomaly_mix(samples[i], synthetic_pool, rng, probability=1.0), rng))
        rows.append(("anomaly_mix+transform", "paper recipe on 2048x1024 (LSJ 512-2048, crop 380x760)", n, t))

    width = max(len(r[1]) for r in rows)
    print(f"{'reader':<22} {'layout':<{width}} {'images':>6} {'seconds':>8} {'img/s':>8}")
    for name, label, n, t in rows:
        print(f"{name:<22} {label:<{width}} {n:>6} {t:>8.2f} {n / t:>8.1f}")


if __name__ == "__main__":
    main()
