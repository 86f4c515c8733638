"""Pictures of the outputs: score heatmaps, class colourings, panoptic segments, thumbnails.

Every function takes and returns ``(H, W, 3)`` uint8 RGB arrays (maps ``(H, W)``), so the writers and
the reports share one look: scores from blue (low) to red (high) blended over the image, the
Cityscapes palette for classes with the unknown class in white (the palette has no white), unknown
panoptic instances in magenta with a white border.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mask2anomaly.data.base import UNKNOWN_CATEGORY
from mask2anomaly.data.classes import TRAIN_ID_COLORS

UNKNOWN_COLOUR = (255, 255, 255)
UNKNOWN_INSTANCE_COLOUR = (255, 0, 255)
TRUTH_COLOUR = (255, 60, 0)


def heatmap(score: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """Colour map of a score map (blue low, red high, over its own range), blended over ``image``."""
    finite = score[np.isfinite(score)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    t = np.clip((score - lo) / (hi - lo + 1e-12), 0, 1).astype(np.float32)
    colour = np.stack([t, 1 - np.abs(2 * t - 1), 1 - t], -1) * np.float32(255)
    if image is not None:
        colour = np.float32(0.55) * colour + np.float32(0.45) * image.astype(np.float32)
    return colour.astype(np.uint8)


def class_colours(labels: np.ndarray, num_known: int) -> np.ndarray:
    """Classes in the Cityscapes palette (by id; ids past it grey), the unknown class ``num_known`` in
    white, void (255) black."""
    palette = np.full((256, 3), 128, np.uint8)
    palette[: len(TRAIN_ID_COLORS)] = TRAIN_ID_COLORS
    palette[num_known] = UNKNOWN_COLOUR
    palette[255] = 0
    return palette[np.clip(labels, 0, 255).astype(np.uint8)]


def truth_overlay(image: np.ndarray, anomaly: np.ndarray) -> np.ndarray:
    """The image with its anomaly pixels (label 1) painted orange."""
    return np.where(anomaly[..., None] == 1, np.array(TRUTH_COLOUR, np.uint8), image).astype(np.uint8)


def panoptic_colours(ids: np.ndarray, segments: list[dict[str, int]], image: np.ndarray) -> np.ndarray:
    """Segments in distinct colours over the dimmed image; unknown instances in magenta with a white
    border."""
    rng = np.random.default_rng(0)
    out = 0.35 * image.astype(np.float32)
    for segment in segments:
        where = ids == segment["id"]
        unknown = segment["category_id"] == UNKNOWN_CATEGORY
        colour = np.array(UNKNOWN_INSTANCE_COLOUR) if unknown else rng.integers(40, 230, 3)
        out[where] = 0.4 * out[where] + 0.6 * colour
        if unknown:
            inside = np.roll(where, 1, 0) & np.roll(where, -1, 0) & np.roll(where, 1, 1) & np.roll(where, -1, 1)
            out[where & ~inside] = 255
    return out.astype(np.uint8)


def thumbnail(array: np.ndarray, width: int = 320) -> np.ndarray:
    """``array`` resized (bilinear) to ``width`` pixels wide, aspect kept."""
    image = Image.fromarray(array)
    height = max(1, round(image.height * width / image.width))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
