"""DenseHybrid's negative pasting: one jittered negative patch into every training crop.

Reference: the authors' ``experiments/semseg_negatives_joint_th.py`` (``_get_outlier_with_mask``,
``_paste_anomaly``) and ``dlv3_cityscapes.py`` (the negatives' geometry), paper 001 Fig. 4 and its
Eq. ``pasting``. Per crop:

1. a negative image is resized so that its shorter side is ``patch x U(jitter)`` (the authors:
   shorter side 384, then a factor U(0.5, 2), for 192-pixel patches in 512 crops; the random scale
   is the "noisy negatives" jitter of Bevandić et al., paper 002) and a ``patch x patch`` window is
   cropped at random (padded with nothing-to-paste when the image is smaller);
2. the pixels to paste: with probability ``rectangle_probability`` (0.5) an axis-aligned rectangle
   whose sides are drawn from ``16, 24, ..., patch - 8``, at a random place in the window; otherwise
   the negative's own object mask (the authors pick two ADE20k classes of the window; our pools
   carry one object mask per cut-out). An object mask cropped away falls back to a rectangle;
3. the window is placed uniformly inside the crop and its chosen pixels replace the crop's
   (hard composite, no blending); they become the unknown label (ignored by the closed-set loss,
   positive for the outlier terms).

Flow negatives (:mod:`mask2anomaly.training.flow`) take the same rectangles, filled by the trainer
with the flow's samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from mask2anomaly.data.anomaly_mix import Cutout

MIN_SIDE, SIDE_STEP, BORDER = 16, 8, 8
"""Rectangle sides: ``MIN_SIDE, MIN_SIDE + SIDE_STEP, ..., patch - BORDER`` (the authors' values)."""


@dataclass(frozen=True)
class Placement:
    """Where a negative goes in a crop.

    Attributes:
        top, left: the window's corner in the crop.
        mask: ``(patch, patch)`` bool pixels of the window that are pasted (cropped to the image).
    """

    top: int
    left: int
    mask: np.ndarray


def rectangle_mask(patch: int, rng: np.random.Generator) -> np.ndarray:
    """``(patch, patch)`` bool rectangle, sides from ``16, 24, ..., patch - 8`` (shrunk to the patch
    for patches under 24 pixels), at a uniform position."""
    sides = np.arange(MIN_SIDE, patch - BORDER + 1, SIDE_STEP)
    if sides.size == 0:
        sides = np.array([max(1, patch // 2)])
    h, w = int(rng.choice(sides)), int(rng.choice(sides))
    y, x = int(rng.integers(0, patch - h + 1)), int(rng.integers(0, patch - w + 1))
    mask = np.zeros((patch, patch), bool)
    mask[y : y + h, x : x + w] = True
    return mask


def negative_window(
    cutout: Cutout, patch: int, jitter: tuple[float, float], rectangle_probability: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-2: ``(image (patch, patch, 3) uint8, mask (patch, patch) bool)`` from one negative."""
    scale = patch * rng.uniform(*jitter) / min(cutout.mask.shape)
    h, w = (max(1, round(side * scale)) for side in cutout.mask.shape)
    image = np.asarray(Image.fromarray(cutout.image).resize((w, h), Image.Resampling.BILINEAR))
    mask = np.asarray(Image.fromarray(cutout.mask.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 0
    y, x = int(rng.integers(0, max(h - patch, 0) + 1)), int(rng.integers(0, max(w - patch, 0) + 1))
    window = np.zeros((patch, patch, 3), np.uint8)
    object_mask = np.zeros((patch, patch), bool)
    cut = (slice(y, y + patch), slice(x, x + patch))
    window[: min(h, patch), : min(w, patch)] = image[cut]
    object_mask[: min(h, patch), : min(w, patch)] = mask[cut]
    inside = np.zeros((patch, patch), bool)
    inside[: min(h, patch), : min(w, patch)] = True
    if rng.random() < rectangle_probability or not object_mask.any():
        return window, rectangle_mask(patch, rng) & inside
    return window, object_mask


def place(crop_size: tuple[int, int], mask: np.ndarray, rng: np.random.Generator) -> Placement:
    """Step 3's position: uniform over the placements inside the crop (the window is cut to the crop
    when larger)."""
    height, width = crop_size
    patch = mask.shape[0]
    top = int(rng.integers(0, max(height - patch, 0) + 1))
    left = int(rng.integers(0, max(width - patch, 0) + 1))
    return Placement(top, left, mask[: height - top, : width - left])


def placed_mask(size: tuple[int, int], where: Placement) -> np.ndarray:
    """``(H, W)`` bool: the pixels of a crop of ``size`` that a window placed at ``where`` covers."""
    pasted = np.zeros(size, bool)
    h, w = where.mask.shape
    pasted[where.top : where.top + h, where.left : where.left + w] = where.mask
    return pasted


def paste_window(image: np.ndarray, window: np.ndarray, where: Placement) -> tuple[np.ndarray, np.ndarray]:
    """``(image with the window's chosen pixels, (H, W) bool pasted pixels)``; ``image`` is not modified."""
    out = image.copy()
    h, w = where.mask.shape
    region = (slice(where.top, where.top + h), slice(where.left, where.left + w))
    out[region][where.mask] = window[:h, :w][where.mask]
    return out, placed_mask(image.shape[:2], where)
