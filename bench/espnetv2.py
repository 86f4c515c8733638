"""ESPNetv2 (Cityscapes) on CPU: throughput and peak memory, fixture mIoU, and prediction overlays.

Throughput: for each scale (s=2.0, s=1.0) and input size (1024x512, 2048x1024) a fresh subprocess
loads the published weights, runs one warm-up and ``--repeats`` timed forwards of one image under
``torch.inference_mode``, and reports the median images/second and the process's peak RSS (and its
growth over the RSS after loading, i.e. what the forward itself costs).

    python bench/espnetv2.py [--repeats 3 --threads 1]

On a shared CPU prefer one thread: with two threads and other jobs running, OpenMP barriers
waiting for a descheduled thread made forwards several times slower than with one.
    python bench/espnetv2.py --miou              # mIoU on the Cityscapes fixture frame
    python bench/espnetv2.py --overlays docs/images

Weights are read from ``$MASK2ANOMALY_SHARED/weights/espnetv2`` and data from
``$MASK2ANOMALY_SHARED_DATA`` (defaults: ``../shared/weights/espnetv2`` and ``../shared/data`` next
to the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mask2anomaly import data
from mask2anomaly.data.classes import TRAIN_ID_COLORS
from mask2anomaly.models.espnetv2 import TRAINED_SIZE, load_espnetv2, predict_logits

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASK2ANOMALY_SHARED", REPO.parent / "shared"))
WEIGHTS = SHARED / "weights" / "espnetv2"
DATA = Path(os.environ.get("MASK2ANOMALY_SHARED_DATA", SHARED / "data"))
SIZES = [(512, 1024), (1024, 2048)]
SCALES = ["2.0", "1.0"]


def weights(scale: str) -> Path:
    return WEIGHTS / f"espnetv2_s_{scale}_city_1024x512.pth"


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(scale: str, height: int, width: int, repeats: int, threads: int) -> dict:
    """Time one configuration in this process (called in a fresh subprocess)."""
    torch.set_num_threads(threads)
    model = load_espnetv2(weights(scale))
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    x, _ = model.preprocess([image])
    loaded = rss_mb()
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": statistics.median(times), "peak_mb": peak, "forward_mb": peak - loaded}


def throughput(repeats: int, threads: int) -> None:
    print(f"| model | input (WxH) | images/s | s/image | peak RSS MB | forward RSS growth MB |  ({threads} threads)")
    print("|---|---|---|---|---|---|")
    for scale in SCALES:
        for h, w in SIZES:
            cmd = [sys.executable, __file__, "--one", scale, str(h), str(w), "--repeats", str(repeats)]
            cmd += ["--threads", str(threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"| ESPNetv2 s={scale} | {w}x{h} | {1 / r['seconds']:.2f} | {r['seconds']:.3f} "
                f"| {r['peak_mb']:.0f} | {r['forward_mb']:.0f} |"
            )


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int = 19) -> np.ndarray:
    """``(K, K)`` confusion matrix (rows: ground truth) over the non-void pixels."""
    valid = gt < num_classes
    return np.bincount(gt[valid].astype(np.int64) * num_classes + pred[valid], minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def miou_present(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in the ground truth."""
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    present = cm.sum(1) > 0
    return float((inter[present] / union[present]).mean())


def fixture_miou() -> None:
    sample = data.open("cityscapes", DATA / "cityscapes_fixture", split="val")[0]
    h, w = sample.size
    print(f"Cityscapes fixture {sample.name} ({w}x{h}); mIoU over the classes present, pixel accuracy")
    for scale in SCALES:
        model = load_espnetv2(weights(scale))
        for size in [None, TRAINED_SIZE]:
            pred = predict_logits(model, sample.image, size=size).argmax(0).numpy()
            cm = confusion(pred, sample.semantic)
            where = f"{w}x{h} (native)" if size is None else f"{size[1]}x{size[0]} (upsampled)"
            acc = np.diag(cm).sum() / cm.sum()
            print(f"  s={scale} at {where}: mIoU {miou_present(cm):.3f}, pixel acc {acc:.3f}")


def overlay(image: np.ndarray, pred: np.ndarray, width: int = 1024, alpha: float = 0.5) -> Image.Image:
    """Prediction colours blended over the image, resized to ``width`` and quantised (small PNG)."""
    colours = TRAIN_ID_COLORS[np.clip(pred, 0, 18)]
    blend = (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).astype(np.uint8)
    out = Image.fromarray(blend)
    h = round(image.shape[0] * width / image.shape[1])
    return out.resize((width, h), Image.BILINEAR).quantize(colors=192, method=Image.Quantize.MEDIANCUT)


# RoadAnomaly frames only: their licences (credits.txt) allow redistribution; Cityscapes-derived
# images (the fixture, Fishyscapes Static) are research-only and stay out of the repository.
OVERLAY_IMAGES = [
    ("road_anomaly", "RoadAnomaly", {}, "animals06_sheep_roads_lambs", "espnetv2_roadanomaly_sheep.png"),
    ("road_anomaly", "RoadAnomaly", {}, "animals10_bovine_cattle_beside_road", "espnetv2_roadanomaly_cattle.png"),
    ("road_anomaly", "RoadAnomaly", {}, "animals22_red_fox_on_road", "espnetv2_roadanomaly_fox.png"),
]


def overlays(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model = load_espnetv2(weights("2.0"))
    for name, root, options, item, out in OVERLAY_IMAGES:
        reader = data.open(name, DATA / root, **options)
        sample = reader[reader.names.index(item)]
        pred = predict_logits(model, sample.image).argmax(0).numpy()
        overlay(sample.image, pred).save(folder / out, optimize=True)
        print(f"{folder / out}: {sample.name} {sample.size[1]}x{sample.size[0]}, {(folder / out).stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--miou", action="store_true", help="mIoU on the Cityscapes fixture frame")
    parser.add_argument("--overlays", type=Path, help="write prediction overlays (PNG) to this folder")
    parser.add_argument("--one", nargs=3, metavar=("SCALE", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not weights("2.0").is_file():
        sys.exit(f"ESPNetv2 weights not found in {WEIGHTS} (set MASK2ANOMALY_SHARED)")
    if args.one:
        scale, h, w = args.one
        print(json.dumps(one(scale, int(h), int(w), args.repeats, args.threads)))
    elif args.miou:
        torch.set_num_threads(args.threads)
        fixture_miou()
    elif args.overlays:
        torch.set_num_threads(args.threads)
        overlays(args.overlays)
    else:
        throughput(args.repeats, args.threads)


if __name__ == "__main__":
    main()
