"""Slow, obviously correct reference computations for the loss tests (numpy, explicit loops)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def bilinear(image: np.ndarray, x: float, y: float) -> float:
    """Value of a 2-d map at normalised ``(x, y)``: pixel centres at ``(i + 0.5) / size``, zero outside."""
    height, width = image.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    value = 0.0
    for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
        for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
            if 0 <= xx < width and 0 <= yy < height:
                value += wx * wy * float(image[yy, xx])
    return value


def resize_align_corners(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with ``align_corners=True``: output corners sit on input corners."""
    in_h, in_w = image.shape
    out = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            sy = i * (in_h - 1) / (height - 1) if height > 1 else 0.0
            sx = j * (in_w - 1) / (width - 1) if width > 1 else 0.0
            y0, x0 = min(math.floor(sy), in_h - 1), min(math.floor(sx), in_w - 1)
            y1, x1 = min(y0 + 1, in_h - 1), min(x0 + 1, in_w - 1)
            fy, fx = sy - y0, sx - x0
            out[i, j] = (
                image[y0, x0] * (1 - fy) * (1 - fx)
                + image[y0, x1] * (1 - fy) * fx
                + image[y1, x0] * fy * (1 - fx)
                + image[y1, x1] * fy * fx
            )
    return out


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(logit: float, target: float) -> float:
    p = sigmoid(logit)
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def mean_bce(logits: Sequence[float], targets: Sequence[float]) -> float:
    return sum(bce(a, b) for a, b in zip(logits, targets, strict=True)) / len(logits)


def dice(logits: Sequence[float], targets: Sequence[float]) -> float:
    probs = [sigmoid(a) for a in logits]
    inter = sum(p * t for p, t in zip(probs, targets, strict=True))
    return 1 - (2 * inter + 1) / (sum(probs) + sum(targets) + 1)


def softmax(row: np.ndarray) -> np.ndarray:
    e = np.exp(row - row.max())
    return e / e.sum()


def marginal(class_logits: np.ndarray, mask_logits: np.ndarray) -> np.ndarray:
    """``f[b, c, y, x] = sum_q softmax(C[b, q])[c] * sigmoid(M[b, q, y, x])`` by loops, "no object" dropped."""
    batch, queries, classes = class_logits.shape
    _, _, height, width = mask_logits.shape
    f = np.zeros((batch, classes - 1, height, width))
    for b in range(batch):
        for q in range(queries):
            probs = softmax(class_logits[b, q])
            for c in range(classes - 1):
                for y in range(height):
                    for x in range(width):
                        f[b, c, y, x] += probs[c] * sigmoid(mask_logits[b, q, y, x])
    return f
