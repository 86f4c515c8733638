"""Throughput a user waits on: ``evaluate`` and ``predict`` end to end with the real ESPNetv2.

The Cityscapes ESPNetv2 (s=2.0) runs at its training size, 1024x512, and four methods (msp,
entropy, max_logit, energy) score every image at its full resolution. Three measurements on the same
images, in one run:

- baseline: the forward pass alone (images decoded and resized beforehand, no scoring);
- ``evaluate``: the whole job (decoding, forward, scoring, maps and labels written, pixel and
  component metrics, MDM, report), images / s of its wall time;
- ``predict``: the whole job with score maps (``.npy``) and heatmap overlays written.

Each job runs in this process after one warm-up image; the table gives images / s and the ratio
to the forward alone.

    python bench/throughput.py [--dataset validation:../shared/data/validation/FS_LostFound --threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mask2anomaly import data
from mask2anomaly.inference import EvaluateConfig, PredictConfig, evaluate, open_model, predict

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASK2ANOMALY_SHARED", REPO.parent / "shared"))
WEIGHTS = SHARED / "weights" / "espnetv2" / "espnetv2_s_2.0_city_1024x512.pth"
DATASET = f"validation:{SHARED / 'data' / 'validation' / 'FS_LostFound'}"
METHODS = ("msp", "entropy", "max_logit", "energy")


def forward_alone(model: str, images: list[np.ndarray]) -> float:
    """Images / s of the forward pass at the model's input size (resizing done beforehand)."""
    predictor = open_model(model, "cpu")
    height, width = predictor.native_size
    resized = [np.asarray(Image.fromarray(im).resize((width, height), Image.Resampling.BILINEAR)) for im in images]
    with torch.inference_mode():
        predictor.model(predictor.model.preprocess(resized[:1])[0])
        start = time.perf_counter()
        for image in resized:
            predictor.model(predictor.model.preprocess([image])[0])
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=DATASET, help="NAME:PATH of the images (default: FS L&F validation)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = f"espnetv2:{WEIGHTS}"
    reader = data.open_spec(args.dataset)
    images = [reader[i].image for i in range(len(reader))]
    n = len(images)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "images").mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / "images" / f"{i:04d}.png")
        (root / "warm").mkdir()
        shutil.copy(root / "images" / "0000.png", root / "warm" / "0.png")
        predict(PredictConfig(model=model, input=root / "warm", out=root / "warm_out", methods=METHODS, device="cpu"))
        baseline = forward_alone(model, images)
        start = time.perf_counter()
        config = EvaluateConfig(model=model, datasets=(args.dataset,), methods=METHODS, out=root / "eval", device="cpu")
        evaluate(config)
        evaluate_rate = n / (time.perf_counter() - start)
        start = time.perf_counter()
        predict(PredictConfig(model=model, input=root / "images", out=root / "pred", methods=METHODS, device="cpu"))
        predict_rate = n / (time.perf_counter() - start)
    height, width = images[0].shape[:2]
    print(f"{n} images of {width}x{height}, ESPNetv2 s=2.0 at 1024x512, {len(METHODS)} methods, {args.threads} threads")
    print("| job | images / s | / forward alone |")
    print("|---|---:|---:|")
    rows = [
        ("forward alone (baseline)", baseline),
        ("evaluate: read, forward, score, write maps, metrics, report", evaluate_rate),
        ("predict: read, forward, score, write maps and overlays", predict_rate),
    ]
    for name, rate in rows:
        print(f"| {name} | {rate:.2f} | {rate / baseline:.2f} |")


if __name__ == "__main__":
    main()
