"""Training transforms on :class:`~mask2anomaly.data.base.Sample` (numpy + PIL, no torchvision).

The Mask2Former / Mask2Anomaly Cityscapes recipe: shortest-edge resize to a random size
(large-scale jitter; 512-2048 px at full resolution), random crop (380x760 in the paper), horizontal
flip, and SSD-style colour jitter (brightness +-32, contrast and saturation x[0.5, 1.5], hue +-18
degrees, each applied with probability 0.5). Images resize bilinearly, label maps by nearest
neighbour; crops pad images with 0 and labels with void; segment areas are recounted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from mask2anomaly.data.base import VOID, Sample


def _resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if label.dtype == np.uint8:
        return np.asarray(Image.fromarray(label).resize((w, h), Image.Resampling.NEAREST))
    return np.asarray(Image.fromarray(label.astype(np.int32)).resize((w, h), Image.Resampling.NEAREST)).astype(np.int32)


def resize(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize to ``(H, W)``: image bilinear, labels nearest."""
    h, w = size
    if (h, w) == sample.size:
        return sample
    image = np.asarray(Image.fromarray(sample.image).resize((w, h), Image.Resampling.BILINEAR))
    changes: dict = {"image": image}
    for field in ("semantic", "anomaly", "instances"):
        value = getattr(sample, field)
        if value is not None:
            changes[field] = _resize_label(value, size)
    return sample.replace(**changes).recount_segments()


def resize_shortest_edge(sample: Sample, short: int, max_long: int | None = None) -> Sample:
    """Resize so the shorter side is ``short`` px (the longer side capped at ``max_long``)."""
    h, w = sample.size
    scale = short / min(h, w)
    if max_long is not None:
        scale = min(scale, max_long / max(h, w))
    return resize(sample, (max(1, round(h * scale)), max(1, round(w * scale))))


def crop(sample: Sample, top: int, left: int, size: tuple[int, int]) -> Sample:
    """Crop ``size`` = ``(H, W)`` at ``(top, left)``; areas outside the image are padded (image 0,
    labels void, instances 0)."""
    ch, cw = size
    h, w = sample.size

    def cut(arr: np.ndarray, fill: int) -> np.ndarray:
        out = np.full((ch, cw, *arr.shape[2:]), fill, dtype=arr.dtype)
        ya, xa, yb, xb = max(top, 0), max(left, 0), min(top + ch, h), min(left + cw, w)
        if ya < yb and xa < xb:
            out[ya - top : yb - top, xa - left : xb - left] = arr[ya:yb, xa:xb]
        return out

    changes: dict = {"image": cut(sample.image, 0)}
    for field, fill in (("semantic", VOID), ("anomaly", VOID), ("instances", 0)):
        value = getattr(sample, field)
        if value is not None:
            changes[field] = cut(value, fill)
    return sample.replace(**changes).recount_segments()


def random_crop(sample: Sample, rng: np.random.Generator, size: tuple[int, int]) -> Sample:
    """Crop ``size`` at a uniformly random position (centred padding when the image is smaller)."""
    h, w = sample.size
    ch, cw = size
    top = int(rng.integers(0, h - ch + 1)) if h >= ch else -((ch - h) // 2)
    left = int(rng.integers(0, w - cw + 1)) if w >= cw else -((cw - w) // 2)
    return crop(sample, top, left, size)


def hflip(sample: Sample) -> Sample:
    """Mirror left-right."""
    changes = {
        field: np.ascontiguousarray(getattr(sample, field)[:, ::-1])
        for field in ("image", "semantic", "anomaly", "instances")
        if getattr(sample, field) is not None
    }
    return sample.replace(**changes)


_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def color_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    brightness: float = 32.0,
    contrast: tuple[float, float] = (0.5, 1.5),
    saturation: tuple[float, float] = (0.5, 1.5),
    hue_degrees: float = 18.0,
    p: float = 0.5,
) -> np.ndarray:
    """SSD-style photometric distortion of an ``(H, W, 3)`` uint8 RGB image.

    Each of brightness shift, contrast scale, saturation scale and hue rotation (in YIQ space)
    is applied independently with probability ``p``.
    """
    img = image.astype(np.float32)
    if rng.random() < p:
        img += rng.uniform(-brightness, brightness)
    if rng.random() < p:
        img *= rng.uniform(*contrast)
    sat = rng.uniform(*saturation) if rng.random() < p else 1.0
    hue = np.deg2rad(rng.uniform(-hue_degrees, hue_degrees)) if rng.random() < p else 0.0
    if sat != 1.0 or hue != 0.0:
        c, s = np.cos(hue) * sat, np.sin(hue) * sat
        rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)
        img = img @ (_YIQ_TO_RGB @ rot @ _RGB_TO_YIQ).T
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class TrainTransform:
    """Large-scale jitter, crop, flip and colour jitter.

    Attributes:
        crop_size: ``(H, W)`` of the output.
        short_edge: Range of the random shortest-edge size (inclusive), in px.
        max_long: Cap on the longer side after resizing (``None``: no cap).
        flip_prob: Probability of a horizontal flip.
        color: Apply :func:`color_jitter`.
    """

    crop_size: tuple[int, int] = (380, 760)
    short_edge: tuple[int, int] = (512, 2048)
    max_long: int | None = None
    flip_prob: float = 0.5
    color: bool = True

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Transform one sample with the random stream ``rng``."""
        short = int(rng.integers(self.short_edge[0], self.short_edge[1] + 1))
        out = random_crop(resize_shortest_edge(sample, short, self.max_long), rng, self.crop_size)
        if rng.random() < self.flip_prob:
            out = hflip(out)
        if self.color:
            out = out.replace(image=color_jitter(out.image, rng))
        return out
