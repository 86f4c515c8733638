"""Synthetic street-scene benchmark: procedural Cityscapes-like scenes with road anomalies.

Each image is drawn from its own random stream ``(seed, split, index)``, so image ``i`` of a split
is the same whatever else is generated (sharding and regeneration are reproducible, byte for byte).

Scenes: perspective road with lane marks, sidewalks, buildings with windows, vegetation, terrain,
sky, poles with traffic signs, cars and persons (thing instances), an optional ego-vehicle hood
(void), cast shadows, global lighting, colour cast, blur and sensor noise. Labels use the Cityscapes
label space (:mod:`mask2anomaly.data.classes`): trainIds 0 road, 1 sidewalk, 2 building, 5 pole,
7 traffic sign, 8 vegetation, 9 terrain, 10 sky, 11 person, 13 car.

Anomalies (``test`` split only, 1-4 per image, about 85 % on the road, from a few pixels to a large
fraction of the road) come from five shape families -- irregular polygon, star, ring, cone, animal --
and are textured with five materials no inlier has -- plastic, rubber, cardboard, fur, hazard stripes
(:data:`ANOMALY_MATERIALS`) -- whose colours overlap the inliers' (dark rubber like asphalt, cardboard
like terrain and sidewalk), so colour alone does not find them. The AnomalyMix outlier pool
(:func:`generate_outlier`) is the COCO analogue: four other shape families -- crescent, cross, blob
cluster, zigzag -- textured with the inlier materials or with four materials of its own -- wood,
plaid, foil, paint (:data:`OUTLIER_MATERIALS`) -- so training sees foreign textures as COCO objects
bring them, yet neither a test shape nor a test texture.

:func:`write_benchmark` writes the Cityscapes layout (train / val), the ``validation`` layout
(anomaly test split), an open-set semantic split (Cityscapes layout, trainId 254 = unknown) and an
open-set panoptic split (COCO panoptic JSON / PNG, unknown category ``anomaly``), so the real-data
readers serve the synthetic data too; :class:`SyntheticReader` yields the same samples in memory.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mask2anomaly.data.base import UNKNOWN, UNKNOWN_CATEGORY, VOID, Reader, Sample, Segment, segments_from_ids
from mask2anomaly.data.classes import CITYSCAPES, LABEL_BY_NAME, TRAIN_ID_TO_LABEL_ID, TRAIN_LABELS
from mask2anomaly.data.coco_panoptic import encode_panoptic_png
from mask2anomaly.errors import UserError

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2, "outliers": 3}
"""Random-stream code of each split."""

ANOMALY_CATEGORY_ID = 100
"""Category id (and segment id base, ``100000 + k``) of anomalies in the panoptic split."""

ANOMALY_SHAPES = ("polygon", "star", "ring", "cone", "animal")
OUTLIER_SHAPES = ("crescent", "cross", "cluster", "zigzag")
MATERIALS = ("asphalt", "sidewalk", "facade", "foliage", "terrain", "car_paint", "clothing", "metal")
"""Inlier materials; the AnomalyMix outliers are textured with these too."""
OUTLIER_MATERIALS = ("wood", "plaid", "foil", "paint")
"""Materials of the AnomalyMix outliers only, as COCO objects bring textures no street scene has."""
ANOMALY_MATERIALS = ("plastic", "rubber", "cardboard", "fur", "hazard")
"""Materials of the test anomalies only: the unseen textures of real road anomalies (cones, tyres,
boxes, animals, barriers)."""

CITY = "synth"
VERSION = 3

_TRAIN = {
    name: LABEL_BY_NAME[name].train_id
    for name in (
        "road",
        "sidewalk",
        "building",
        "pole",
        "traffic sign",
        "vegetation",
        "terrain",
        "sky",
        "person",
        "car",
    )
}


@dataclass(frozen=True)
class Scene:
    """One generated image with its labels.

    Attributes:
        name: Cityscapes-style stem, ``synth_<index:06d>_000019``.
        image: ``(H, W, 3)`` uint8 RGB.
        train_ids: ``(H, W)`` uint8 trainIds, 255 void, 254 anomaly.
        instance_ids: ``(H, W)`` int32: Cityscapes instanceIds for inliers (labelId*1000+k for
            things, labelId for stuff, 0 for void) and ``100000 + k`` for anomaly ``k``.
    """

    name: str
    image: np.ndarray
    train_ids: np.ndarray
    instance_ids: np.ndarray

    @property
    def anomaly(self) -> np.ndarray:
        """``(H, W)`` uint8: 0 inlier, 1 anomaly, 255 void."""
        out = (self.train_ids == UNKNOWN).astype(np.uint8)
        out[self.train_ids == VOID] = VOID
        return out

    @property
    def label_ids(self) -> np.ndarray:
        """``(H, W)`` uint8 Cityscapes labelIds (anomalies -> 0, unlabeled; void -> 1, ego vehicle)."""
        out = TRAIN_ID_TO_LABEL_ID[self.train_ids]
        out[self.train_ids == VOID] = LABEL_BY_NAME["ego vehicle"].id
        out[self.train_ids == UNKNOWN] = LABEL_BY_NAME["unlabeled"].id
        return out

    def segments(self) -> tuple[Segment, ...]:
        """Panoptic segments (category = trainId, or unknown for anomalies)."""
        info: dict[int, tuple[int, bool, bool]] = {}
        for v in np.unique(self.instance_ids):
            v = int(v)
            if v >= ANOMALY_CATEGORY_ID * 1000:
                info[v] = (UNKNOWN_CATEGORY, True, False)
            elif v >= 1000:
                info[v] = (int(_LABEL_TO_TRAIN[v // 1000]), True, False)
            elif v > 0:
                info[v] = (int(_LABEL_TO_TRAIN[v]), False, False)
        return segments_from_ids(self.instance_ids, info)


_LABEL_TO_TRAIN = {lab.id: lab.train_id for lab in TRAIN_LABELS}


MAX_SIDE = 4096
"""Largest side of a generated scene (a 4096 x 4096 scene is 50 MB of image and labels)."""


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``256x512``), each side 32 .. :data:`MAX_SIDE`."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"size must be HxW (e.g. 256x512), got {text!r}") from None
    if not (32 <= h <= MAX_SIDE and 32 <= w <= MAX_SIDE):
        raise UserError(f"size {text!r}: each side must be 32..{MAX_SIDE} pixels")
    return h, w


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


# --------------------------------------------------------------------------- textures


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """``(h, w)`` float32 value noise, unit variance at the grid points, feature size ``cell`` px."""
    cell = max(cell, 1.0)
    gh, gw = int(h / cell) + 2, int(w / cell) + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    ys, xs = np.arange(h, dtype=np.float32) / cell, np.arange(w, dtype=np.float32) / cell
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


_PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "asphalt": ((72, 72, 76), (95, 92, 96), (110, 108, 104), (60, 62, 70)),
    "sidewalk": ((170, 160, 150), (150, 140, 145), (185, 175, 160), (130, 125, 128)),
    "facade": ((140, 90, 70), (190, 180, 160), (120, 120, 125), (220, 215, 200), (160, 130, 100)),
    "foliage": ((60, 95, 40), (80, 120, 50), (45, 75, 35), (100, 130, 60)),
    "terrain": ((130, 150, 80), (150, 140, 90), (110, 130, 70)),
    "car_paint": ((20, 20, 25), (200, 200, 205), (150, 20, 25), (30, 50, 120), (120, 120, 125), (60, 90, 60)),
    "clothing": ((40, 40, 60), (150, 40, 40), (60, 80, 140), (200, 190, 170), (90, 70, 50), (30, 30, 30)),
    "metal": ((130, 130, 135), (100, 100, 105), (160, 160, 150)),
    "sky": ((140, 175, 215), (180, 200, 225), (200, 205, 210)),
    "sign": ((230, 230, 230), (30, 70, 160), (200, 30, 30), (230, 190, 30)),
    "skin": ((225, 185, 160), (160, 110, 80), (110, 75, 55)),
    "plastic": ((150, 25, 30), (40, 60, 130), (200, 195, 180), (70, 100, 60), (130, 130, 135)),
    "rubber": ((35, 35, 38), (55, 50, 50), (45, 45, 55)),
    "cardboard": ((170, 130, 85), (150, 115, 75), (190, 160, 110)),
    "fur": ((120, 90, 60), (85, 75, 65), (200, 190, 175), (60, 50, 45)),
    "hazard": ((160, 140, 60), (150, 40, 35), (90, 90, 95)),
    "wood": ((150, 100, 60), (115, 75, 45), (185, 140, 95)),
    "plaid": ((120, 40, 50), (40, 90, 70), (60, 60, 110), (170, 150, 60)),
    "foil": ((200, 200, 210), (200, 170, 90), (170, 175, 185)),
    "paint": ((130, 60, 160), (230, 120, 30), (40, 170, 180), (220, 110, 160), (220, 210, 50)),
}
_GRAIN = {
    "asphalt": 9.0,
    "sidewalk": 7.0,
    "facade": 6.0,
    "foliage": 22.0,
    "terrain": 14.0,
    "car_paint": 4.0,
    "clothing": 8.0,
    "metal": 5.0,
    "sky": 3.0,
    "sign": 3.0,
    "skin": 5.0,
    "plastic": 3.0,
    "rubber": 6.0,
    "cardboard": 5.0,
    "fur": 26.0,
    "hazard": 4.0,
    "wood": 10.0,
    "plaid": 6.0,
    "foil": 30.0,
    "paint": 2.0,
}
_CELL = {
    "asphalt": 2.0,
    "sidewalk": 3.0,
    "facade": 6.0,
    "foliage": 4.0,
    "terrain": 5.0,
    "car_paint": 12.0,
    "clothing": 5.0,
    "metal": 8.0,
    "sky": 40.0,
    "sign": 10.0,
    "skin": 6.0,
    "plastic": 10.0,
    "rubber": 1.5,
    "cardboard": 2.0,
    "fur": 1.2,
    "hazard": 8.0,
    "wood": 3.0,
    "plaid": 6.0,
    "foil": 1.0,
    "paint": 20.0,
}


def _texture(rng: np.random.Generator, material: str, h: int, w: int) -> np.ndarray:
    """``(h, w, 3)`` float32 texture of a material: palette colour, jitter, grain, shading."""
    palette = _PALETTES[material]
    base = np.asarray(palette[rng.integers(len(palette))], dtype=np.float32) + rng.normal(0, 10, 3)
    lum = _smooth_noise(rng, h, w, _CELL[material]) * _GRAIN[material]
    lum += _smooth_noise(rng, h, w, _CELL[material] * 6) * _GRAIN[material] * 0.8
    tint = _smooth_noise(rng, h, w, _CELL[material] * 3)[..., None] * rng.normal(0, 4, 3).astype(np.float32)
    shade = np.linspace(rng.uniform(-12, 12), rng.uniform(-12, 12), h, dtype=np.float32)[:, None, None]
    tex = base + lum[..., None] + tint + shade
    if material == "facade":
        step_y, step_x = rng.integers(8, 20), rng.integers(8, 20)
        yy, xx = np.arange(h)[:, None] % step_y, np.arange(w)[None, :] % step_x
        window = (yy > step_y * 0.35) & (xx > step_x * 0.3)
        tex[window] = tex[window] * 0.35 + 20
    elif material == "sidewalk":
        step = rng.integers(6, 14)
        joint = (np.arange(h)[:, None] % step == 0) | (np.arange(w)[None, :] % (2 * step) == 0)
        tex[joint] *= 0.8
    elif material == "cardboard":
        period = rng.integers(3, 6)
        tex[np.arange(h) % period == 0] *= 0.85
    elif material == "hazard":
        period = rng.integers(6, 16)
        band = ((np.arange(h)[:, None] + np.arange(w)[None, :]) // period) % 2 == 1
        light = rng.choice([235.0, 25.0])
        if band.any():
            tex[band] = tex[band] - tex[band].mean(0) + light
    elif material == "wood":
        warp = _smooth_noise(rng, h, w, 12.0) * rng.uniform(2, 5)
        rings = np.sin((np.arange(h, dtype=np.float32)[:, None] + warp) * rng.uniform(0.6, 1.4))
        tex += rings[..., None] * 14
    elif material == "plaid":
        period = rng.integers(5, 12)
        rows, cols = (np.arange(h) // period) % 2 == 0, (np.arange(w) // period) % 2 == 0
        other = np.asarray(_PALETTES["plaid"][rng.integers(len(_PALETTES["plaid"]))], dtype=np.float32)
        tex[rows] = tex[rows] * 0.5 + other * 0.5
        tex[:, cols] = tex[:, cols] * 0.6 + other * 0.4
    return tex


# --------------------------------------------------------------------------- drawing


class _Canvas:
    """The image under construction and its label maps; objects are painted back to front."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.image = np.zeros((h, w, 3), np.float32)
        self.train_ids = np.full((h, w), VOID, np.uint8)
        self.instance_ids = np.zeros((h, w), np.int32)

    def fill(self, rng: np.random.Generator, mask: np.ndarray, material: str, train_id: int, instance_id: int) -> None:
        """Paint full-frame ``mask`` with a material textured over the mask's bounding box only."""
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            return
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        self.paste(mask[y0:y1, x0:x1], y0, x0, _texture(rng, material, y1 - y0, x1 - x0), train_id, instance_id)

    def paste(self, local: np.ndarray, y0: int, x0: int, tex: np.ndarray, train_id: int, instance_id: int) -> bool:
        """Paint a local ``(h, w)`` bool mask at ``(y0, x0)``, clipped to the frame; True if visible."""
        lh, lw = local.shape
        ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + lh, self.h), min(x0 + lw, self.w)
        if ya >= yb or xa >= xb:
            return False
        m = local[ya - y0 : yb - y0, xa - x0 : xb - x0]
        if not m.any():
            return False
        region = (slice(ya, yb), slice(xa, xb))
        self.image[region][m] = tex[ya - y0 : yb - y0, xa - x0 : xb - x0][m]
        self.train_ids[region][m] = train_id
        self.instance_ids[region][m] = instance_id
        return True

    def shade(self, local: np.ndarray, y0: int, x0: int, factor: float) -> None:
        """Darken the image under a local mask (cast shadow); labels are unchanged."""
        lh, lw = local.shape
        ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + lh, self.h), min(x0 + lw, self.w)
        if ya < yb and xa < xb:
            m = local[ya - y0 : yb - y0, xa - x0 : xb - x0]
            self.image[ya:yb, xa:xb][m] *= factor


def _mask(h: int, w: int, draw) -> np.ndarray:
    """Rasterise shapes with PIL on an ``(h, w)`` canvas; ``draw(ImageDraw)`` paints with fill=1."""
    im = Image.new("L", (max(w, 1), max(h, 1)), 0)
    draw(ImageDraw.Draw(im))
    return np.asarray(im, dtype=bool)


def _ellipse(h: int, w: int) -> np.ndarray:
    """``(h, w)`` bool mask of the ellipse inscribed in the box."""
    return _mask(h, w, lambda d: d.ellipse((0, 0, w - 1, h - 1), fill=1))


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:h, 0:w].astype(np.float32)


def _car(rng: np.random.Generator, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Local car mask and its window/wheel mask (both ``(h, w)``)."""
    w = max(width, 4)
    h = max(int(w * rng.uniform(0.55, 0.8)), 3)
    body_top = int(h * rng.uniform(0.35, 0.5))
    inset = w * rng.uniform(0.12, 0.25)

    def shape(d: ImageDraw.ImageDraw) -> None:
        d.rounded_rectangle((0, body_top, w - 1, h * 0.88), radius=max(1, int(h * 0.1)), fill=1)
        d.polygon(((inset, 0), (w - 1 - inset, 0), (w - 1 - inset * 0.5, body_top), (inset * 0.5, body_top)), fill=1)
        r = max(1, int(h * 0.14))
        for cx in (w * 0.22, w * 0.78):
            d.ellipse((cx - r, h - 1 - 2 * r, cx + r, h - 1), fill=1)

    def dark(d: ImageDraw.ImageDraw) -> None:
        d.polygon(
            (
                (inset * 1.3, h * 0.06),
                (w - 1 - inset * 1.3, h * 0.06),
                (w - 1 - inset * 0.8, body_top * 0.95),
                (inset * 0.8, body_top * 0.95),
            ),
            fill=1,
        )
        r = max(1, int(h * 0.14))
        for cx in (w * 0.22, w * 0.78):
            d.ellipse((cx - r, h - 1 - 2 * r, cx + r, h - 1), fill=1)

    return _mask(h, w, shape), _mask(h, w, dark)


def _person(height: int) -> tuple[np.ndarray, np.ndarray]:
    """Local person mask and its head (skin) mask."""
    h = max(height, 6)
    w = max(int(h * 0.38), 3)

    def shape(d: ImageDraw.ImageDraw) -> None:
        d.ellipse((w * 0.32, 0, w * 0.68, h * 0.15), fill=1)
        d.rounded_rectangle((w * 0.2, h * 0.15, w * 0.8, h * 0.55), radius=max(1, int(w * 0.1)), fill=1)
        d.rectangle((w * 0.05, h * 0.17, w * 0.2, h * 0.5), fill=1)
        d.rectangle((w * 0.8, h * 0.17, w * 0.95, h * 0.5), fill=1)
        d.rectangle((w * 0.25, h * 0.55, w * 0.47, h - 1), fill=1)
        d.rectangle((w * 0.53, h * 0.55, w * 0.75, h - 1), fill=1)

    return _mask(h, w, shape), _mask(h, w, lambda d: d.ellipse((w * 0.32, 0, w * 0.68, h * 0.15), fill=1))


def _shape(rng: np.random.Generator, family: str, size: int) -> np.ndarray:
    """Local bool mask of a shape family, roughly ``size`` px tall (at least 6)."""
    s = max(size, 6)
    aspect = rng.uniform(0.6, 1.8)
    w = max(int(s * aspect), 6)
    cx, cy = (w - 1) / 2, (s - 1) / 2
    rx, ry = (w - 1) / 2, (s - 1) / 2

    def polar(n: int, radii: np.ndarray, phase: float) -> list[tuple[float, float]]:
        ang = phase + np.linspace(0, 2 * np.pi, n, endpoint=False)
        return [(cx + rx * r * np.cos(a), cy + ry * r * np.sin(a)) for a, r in zip(ang, radii, strict=True)]

    if family == "polygon":
        n = int(rng.integers(5, 10))
        pts = polar(n, rng.uniform(0.45, 1.0, n), rng.uniform(0, np.pi))
        return _mask(s, w, lambda d: d.polygon(pts, fill=1))
    if family == "star":
        n = int(rng.integers(4, 8))
        radii = np.tile([1.0, rng.uniform(0.3, 0.55)], n)
        pts = polar(2 * n, radii, rng.uniform(0, np.pi))
        return _mask(s, w, lambda d: d.polygon(pts, fill=1))
    if family == "ring":
        t = rng.uniform(0.25, 0.5)

        def ring(d: ImageDraw.ImageDraw) -> None:
            d.ellipse((0, 0, w - 1, s - 1), fill=1)
            d.ellipse((rx * t, ry * t, w - 1 - rx * t, s - 1 - ry * t), fill=0)

        return _mask(s, w, ring)
    if family == "cone":
        top = rng.uniform(0.05, 0.25)

        def cone(d: ImageDraw.ImageDraw) -> None:
            d.polygon(((cx - rx * top, 0), (cx + rx * top, 0), (w * 0.85, s * 0.85), (w * 0.15, s * 0.85)), fill=1)
            d.rectangle((0, min(s * 0.85, s - 1), w - 1, s - 1), fill=1)

        return _mask(s, w, cone)
    if family == "animal":
        aw = max(int(s * rng.uniform(1.3, 2.0)), 8)

        def animal(d: ImageDraw.ImageDraw) -> None:
            d.ellipse((aw * 0.15, s * 0.25, aw * 0.8, s * 0.7), fill=1)
            for lx in (0.22, 0.35, 0.6, 0.72):
                d.rectangle((aw * lx, s * 0.55, aw * (lx + 0.06), s - 1), fill=1)
            d.polygon(((aw * 0.72, s * 0.4), (aw * 0.85, s * 0.05), (aw * 0.95, s * 0.12), (aw * 0.8, s * 0.5)), fill=1)
            d.ellipse((aw * 0.82, 0, aw - 1, s * 0.22), fill=1)
            d.line(((aw * 0.16, s * 0.35), (aw * 0.02, s * 0.6)), fill=1, width=max(1, s // 14))

        m = _mask(s, aw, animal)
        return m[:, ::-1].copy() if rng.random() < 0.5 else m
    if family == "crescent":
        off = rng.uniform(0.25, 0.5)

        def crescent(d: ImageDraw.ImageDraw) -> None:
            d.ellipse((0, 0, w - 1, s - 1), fill=1)
            d.ellipse((rx * off * 2, -ry * off, w - 1 + rx * off * 2, s - 1 - ry * off), fill=0)

        return _mask(s, w, crescent)
    if family == "cross":
        t = rng.uniform(0.2, 0.4)

        def cross(d: ImageDraw.ImageDraw) -> None:
            d.rectangle((cx - rx * t, 0, cx + rx * t, s - 1), fill=1)
            d.rectangle((0, cy - ry * t, w - 1, cy + ry * t), fill=1)

        return _mask(s, w, cross)
    if family == "cluster":
        blobs = [
            (rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * s, rng.uniform(0.15, 0.3) * min(w, s))
            for _ in range(int(rng.integers(3, 6)))
        ]
        return _mask(s, w, lambda d: [d.ellipse((x - r, y - r, x + r, y + r), fill=1) for x, y, r in blobs])
    if family == "zigzag":
        n = int(rng.integers(3, 6))
        pts = [(w * i / n, 0 if i % 2 else s - 1) for i in range(n + 1)]
        return _mask(s, w, lambda d: d.line(pts, fill=1, width=max(2, int(s * rng.uniform(0.15, 0.3)))))
    raise ValueError(family)


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class _Street:
    """Perspective geometry of one scene: the road's centre line and widths per row."""

    horizon: float
    vx: float
    depth: np.ndarray
    center: np.ndarray
    road_k: float
    walk_k: float

    def x_at(self, t: float, lateral: float, w: int) -> float:
        """Image x of a point at depth ``t`` (0 horizon .. 1 bottom) and ``lateral`` position.

        ``|lateral| <= 1`` is across the road (edge at 1); ``1 < |lateral| <= 1.5`` is across the
        sidewalk; beyond is terrain.
        """
        row = min(int(self.horizon + t * (self.depth.shape[0] - self.horizon)), self.depth.shape[0] - 1)
        centre = float(self.center[row, 0]) if self.depth[row, 0] > 0 else self.vx
        half = self.road_k * w * t
        if abs(lateral) <= 1:
            return centre + lateral * half
        return centre + np.sign(lateral) * (half + (abs(lateral) - 1) / 0.5 * self.walk_k * w * t)


def _street(rng: np.random.Generator, h: int, w: int) -> _Street:
    yy = _grid(h, w)[0]
    horizon = h * rng.uniform(0.36, 0.5)
    vx = w * rng.uniform(0.35, 0.65)
    depth = np.clip((yy - horizon) / (h - horizon), 0, None)
    curve = rng.uniform(-0.25, 0.25) * w
    center = vx + curve * (1 - depth) ** 2 * (depth > 0) + rng.uniform(-0.15, 0.15) * w * depth
    return _Street(horizon, vx, depth, center, rng.uniform(0.3, 0.55), rng.uniform(0.12, 0.3))


def _draw_background(rng: np.random.Generator, cv: _Canvas, st: _Street) -> None:
    """Sky, a skyline of facades and trees, terrain / vegetation / building sides, sidewalks, road."""
    h, w = cv.h, cv.w
    xx = _grid(h, w)[1]
    sky_rows = int(st.horizon) + 2
    sky_tex = _texture(rng, "sky", sky_rows, w) + np.linspace(-25, 5, sky_rows, dtype=np.float32)[:, None, None]
    cv.paste(np.ones((sky_rows, w), bool), 0, 0, sky_tex, _TRAIN["sky"], LABEL_BY_NAME["sky"].id)
    x = 0
    while x < w:
        bw = int(rng.uniform(0.08, 0.3) * w)
        top = int(rng.uniform(0.03, 0.9) * st.horizon)
        kind = "facade" if rng.random() < 0.75 else "foliage"
        cls = "building" if kind == "facade" else "vegetation"
        m = np.ones((int(st.horizon) + 1 - top, min(bw, w - x)), bool)
        if kind == "foliage":
            m &= _smooth_noise(rng, *m.shape, bw / 3 + 1) > -0.8
        cv.paste(m, top, x, _texture(rng, kind, *m.shape), _TRAIN[cls], LABEL_BY_NAME[cls].id)
        x += bw
    below = st.depth > 0
    half, walk = st.depth * w * st.road_k, st.depth * w * st.walk_k
    offset = xx - st.center
    for side in (-1, 1):
        kind, cls = [("terrain", "terrain"), ("foliage", "vegetation"), ("facade", "building")][int(rng.integers(3))]
        cv.fill(rng, below & (offset * side > half + walk), kind, _TRAIN[cls], LABEL_BY_NAME[cls].id)
        sidewalk = below & (offset * side > half) & (offset * side <= half + walk)
        cv.fill(rng, sidewalk, "sidewalk", _TRAIN["sidewalk"], LABEL_BY_NAME["sidewalk"].id)
    road = below & (np.abs(offset) <= half)
    cv.fill(rng, road, "asphalt", _TRAIN["road"], LABEL_BY_NAME["road"].id)
    dash = road & (np.abs(offset) < np.maximum(st.depth * w * 0.006, 0.4)) & (((st.depth * 12) ** 0.7 % 1) < 0.5)
    cv.image[dash] = cv.image[dash] * 0.3 + 170


def _plan_objects(rng: np.random.Generator, with_anomalies: bool) -> list[tuple[float, str, float]]:
    """``(depth, kind, lateral)`` of every object, far to near (painting order)."""
    objects: list[tuple[float, str, float]] = []
    for _ in range(int(rng.integers(0, 6))):
        objects.append((rng.uniform(0.08, 1.0), "car", rng.uniform(-0.8, 0.8)))
    for _ in range(int(rng.integers(0, 5))):
        on_walk = rng.random() < 0.8
        lateral = rng.choice([-1, 1]) * rng.uniform(1.05, 1.45) if on_walk else rng.uniform(-0.8, 0.8)
        objects.append((rng.uniform(0.08, 1.0), "person", lateral))
    for _ in range(int(rng.integers(0, 4))):
        objects.append((rng.uniform(0.1, 1.0), "pole", rng.choice([-1, 1]) * rng.uniform(1.1, 1.4)))
    if with_anomalies:
        for _ in range(int(rng.integers(1, 5))):
            on_road = rng.random() < 0.85
            lateral = rng.uniform(-0.85, 0.85) if on_road else rng.choice([-1, 1]) * rng.uniform(1.05, 1.6)
            objects.append((rng.uniform(0.05, 1.0), "anomaly", lateral))
    return sorted(objects, key=lambda o: o[0])


def _draw_objects(rng: np.random.Generator, cv: _Canvas, st: _Street, objects: list) -> None:
    """Paint cars, persons (thing instances), poles with signs, and anomalies (ids ``100000 + k``)."""
    h, w = cv.h, cv.w
    counters = {"car": 0, "person": 0, "anomaly": 0}
    for t, kind, lateral in objects:
        y_base = min(int(st.horizon + t * (h - st.horizon)), h - 1)
        x_pos = st.x_at(t, lateral, w)
        if kind == "car":
            body, dark = _car(rng, int(st.road_k * w * 2 * t * rng.uniform(0.25, 0.4)))
            y0, x0 = y_base - body.shape[0], int(x_pos - body.shape[1] / 2)
            shadow = _ellipse(max(2, body.shape[0] // 5), body.shape[1] + 4)
            cv.shade(shadow, y_base - body.shape[0] // 10, x0 - 2, 0.55)
            tex = _texture(rng, "car_paint", *body.shape)
            tex[dark] = tex[dark] * 0.25 + 10
            if cv.paste(body, y0, x0, tex, _TRAIN["car"], LABEL_BY_NAME["car"].id * 1000 + counters["car"]):
                counters["car"] += 1
        elif kind == "person":
            body, head = _person(int(h * 0.5 * t * rng.uniform(0.7, 1.1)))
            tex = _texture(rng, "clothing", *body.shape)
            tex[head] = _texture(rng, "skin", *body.shape)[head]
            y0, x0 = y_base - body.shape[0], int(x_pos - body.shape[1] / 2)
            if cv.paste(body, y0, x0, tex, _TRAIN["person"], LABEL_BY_NAME["person"].id * 1000 + counters["person"]):
                counters["person"] += 1
        elif kind == "pole":
            ph, pw = int(h * 0.9 * t * rng.uniform(0.6, 1.0)) + 4, max(1, int(w * 0.008 * t) + 1)
            x0 = int(x_pos)
            cv.paste(
                np.ones((ph, pw), bool),
                y_base - ph,
                x0,
                _texture(rng, "metal", ph, pw),
                _TRAIN["pole"],
                LABEL_BY_NAME["pole"].id,
            )
            ss = max(3, int(pw * rng.uniform(4, 8)))
            sign = _shape(rng, "polygon", ss) if rng.random() < 0.3 else _ellipse(ss, ss)
            if rng.random() < 0.4:
                sign = np.ones_like(sign)
            cv.paste(
                sign,
                y_base - ph - sign.shape[0] // 2,
                x0 + pw // 2 - sign.shape[1] // 2,
                _texture(rng, "sign", *sign.shape),
                _TRAIN["traffic sign"],
                LABEL_BY_NAME["traffic sign"].id,
            )
        else:
            scale = np.exp(rng.uniform(np.log(0.04), np.log(0.8)))
            family = ANOMALY_SHAPES[int(rng.integers(len(ANOMALY_SHAPES)))]
            m = _shape(rng, family, int(h * 0.8 * t * scale + rng.uniform(2, 5)))
            tex = _texture(rng, ANOMALY_MATERIALS[int(rng.integers(len(ANOMALY_MATERIALS)))], *m.shape)
            y0, x0 = y_base - m.shape[0], int(x_pos - m.shape[1] / 2)
            cv.shade(_ellipse(max(2, m.shape[0] // 6), m.shape[1] + 2), y_base - m.shape[0] // 12, x0 - 1, 0.6)
            if cv.paste(m, y0, x0, tex, UNKNOWN, ANOMALY_CATEGORY_ID * 1000 + counters["anomaly"]):
                counters["anomaly"] += 1


def _camera(rng: np.random.Generator, cv: _Canvas) -> np.ndarray:
    """Optional ego-vehicle hood (void), exposure, colour cast, vignetting-like light gradient, blur, noise."""
    h, w = cv.h, cv.w
    if rng.random() < 0.5:
        hood = int(h * rng.uniform(0.03, 0.09))
        bulge = _mask(hood * 2, w, lambda d: d.ellipse((-w * 0.2, 0, w * 1.2, hood * 4), fill=1))
        cv.paste(bulge, h - hood, 0, _texture(rng, "car_paint", hood * 2, w) * 0.4, VOID, 0)
    yy, xx = _grid(h, w)
    gain = rng.uniform(0.7, 1.2) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    light = 1 + rng.uniform(-0.2, 0.2) * (xx / w - 0.5) + rng.uniform(-0.15, 0.15) * (yy / h - 0.5)
    img = cv.image * gain * light[..., None] + rng.uniform(-15, 15)
    img = (img + np.roll(img, 1, axis=0) + np.roll(img, 1, axis=1)) / 3
    img += rng.normal(0, rng.uniform(1.5, 5), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def generate_scene(split: str, index: int, *, seed: int = 0, size: tuple[int, int] = (256, 512)) -> Scene:
    """Draw image ``index`` of ``split`` (``train``, ``val`` or ``test``; only ``test`` has anomalies).

    Args:
        split: Split name.
        index: Image index within the split.
        seed: Benchmark seed.
        size: ``(H, W)``.
    """
    if split not in ("train", "val", "test"):
        raise UserError(f"synthetic split must be train, val or test, got {split!r}")
    rng = _rng(seed, split, index)
    cv = _Canvas(*size)
    street = _street(rng, *size)
    _draw_background(rng, cv, street)
    _draw_objects(rng, cv, street, _plan_objects(rng, split == "test"))
    image = _camera(rng, cv)
    return Scene(f"{CITY}_{index:06d}_000019", image, cv.train_ids, cv.instance_ids)


def generate_outlier(index: int, *, seed: int = 0, max_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Draw AnomalyMix outlier ``index``: a cut-out of a shape family disjoint from the test anomalies.

    Returns:
        ``(h, w, 3)`` uint8 RGB cut-out (0 outside the object) and its ``(h, w)`` bool mask, cropped
        to the object's bounding box.
    """
    rng = _rng(seed, "outliers", index)
    size = int(np.exp(rng.uniform(np.log(12), np.log(max(max_size, 13)))))
    m = _shape(rng, OUTLIER_SHAPES[int(rng.integers(len(OUTLIER_SHAPES)))], size)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    m = m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    materials = MATERIALS + OUTLIER_MATERIALS
    tex = _texture(rng, materials[int(rng.integers(len(materials)))], *m.shape)
    tex = tex * rng.uniform(0.75, 1.15) + rng.normal(0, 3, tex.shape).astype(np.float32)
    image = np.where(m[..., None], np.clip(tex + 0.5, 0, 255), 0).astype(np.uint8)
    return image, m


# --------------------------------------------------------------------------- reader


class SyntheticReader(Reader):
    """Synthetic scenes generated in memory, opened as ``synthetic:SPLIT?n=...&seed=...&size=HxW``.

    Samples carry ``semantic`` (trainIds; anomalies :data:`~mask2anomaly.data.base.UNKNOWN`),
    ``instances`` and ``segments`` (Cityscapes ids; anomalies ``100000 + k``, unknown category), and
    for ``test`` the ``anomaly`` map.

    Args:
        root: Split name (``train``, ``val``, ``test``).
        n: Number of images.
        seed: Benchmark seed.
        size: ``"HxW"`` or ``(H, W)``.
        skip_bad: Accepted for a uniform interface; generation has no bad input.
    """

    label_space = CITYSCAPES

    def __init__(
        self,
        root: str | Path,
        *,
        n: int | str = 100,
        seed: int | str = 0,
        size: str | tuple[int, int] = "256x512",
        skip_bad: bool = False,
    ) -> None:
        super().__init__(root, skip_bad=skip_bad)
        self.split = str(root)
        if self.split not in ("train", "val", "test"):
            raise UserError(f"synthetic split must be train, val or test, got {self.split!r}")
        try:
            self.n, self.seed = int(n), int(seed)
        except ValueError:
            raise UserError(f"synthetic: n and seed must be integers, got n={n!r} seed={seed!r}") from None
        self.size = parse_size(size) if isinstance(size, str) else tuple(size)

    @property
    def names(self) -> list[str]:
        return [f"{CITY}_{i:06d}_000019" for i in range(self.n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return scene_to_sample(generate_scene(self.split, index, seed=self.seed, size=self.size), self.split == "test")


def scene_to_sample(scene: Scene, with_anomaly: bool) -> Sample:
    """The :class:`Sample` of a scene (anomaly map only when ``with_anomaly``)."""
    return Sample(
        scene.name,
        scene.image,
        semantic=scene.train_ids,
        anomaly=scene.anomaly if with_anomaly else None,
        instances=scene.instance_ids,
        segments=scene.segments(),
    )


# --------------------------------------------------------------------------- writer


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == np.int32:
        Image.fromarray(array.astype(np.uint16)).save(path, compress_level=1)
    else:
        Image.fromarray(array).save(path, compress_level=1)


def panoptic_categories() -> list[dict]:
    """COCO-style categories of the synthetic panoptic split: the 19 Cityscapes classes in trainId
    order (id = labelId), then ``anomaly``."""
    cats = [
        {"id": lab.id, "name": lab.name, "isthing": int(lab.is_thing), "color": list(lab.color)} for lab in TRAIN_LABELS
    ]
    cats.append({"id": ANOMALY_CATEGORY_ID, "name": "anomaly", "isthing": 1, "color": [255, 255, 255]})
    return cats


_CATEGORY_ID = {lab.train_id: lab.id for lab in TRAIN_LABELS} | {UNKNOWN_CATEGORY: ANOMALY_CATEGORY_ID}


def write_benchmark(
    out: str | Path,
    *,
    train: int,
    val: int,
    test: int,
    outliers: int = 300,
    size: tuple[int, int] = (256, 512),
    seed: int = 0,
) -> dict:
    """Write the synthetic benchmark in all its layouts (module docstring) and return its metadata.

    Layout under ``out``: ``cityscapes/{leftImg8bit,gtFine}/{train,val}/synth/``,
    ``anomaly/{images,labels_masks}/`` (test, ``validation`` layout),
    ``openset_semantic/{leftImg8bit,gtFine}/test/synth/`` (trainIds with 254 = unknown),
    ``openset_panoptic/{panoptic_test.json,panoptic_test/,images/}``,
    ``outliers/{images,masks}/`` (AnomalyMix pool) and ``meta.json``.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: folder exists and is not empty; choose a new output folder")
    for split, n in (("train", train), ("val", val)):
        for i in range(n):
            sc = generate_scene(split, i, seed=seed, size=size)
            gt = out / "cityscapes" / "gtFine" / split / CITY
            _save(out / "cityscapes" / "leftImg8bit" / split / CITY / f"{sc.name}_leftImg8bit.png", sc.image)
            _save(gt / f"{sc.name}_gtFine_labelTrainIds.png", sc.train_ids)
            _save(gt / f"{sc.name}_gtFine_labelIds.png", sc.label_ids)
            instance_file = np.where(sc.instance_ids == 0, sc.label_ids, sc.instance_ids)
            _save(gt / f"{sc.name}_gtFine_instanceIds.png", instance_file)
    images, annotations = [], []
    for i in range(test):
        sc = generate_scene("test", i, seed=seed, size=size)
        first = out / "anomaly" / "images" / f"{i}.png"
        _save(first, sc.image)
        _save(out / "anomaly" / "labels_masks" / f"{i}.png", sc.anomaly)
        for copy in (
            out / "openset_semantic" / "leftImg8bit" / "test" / CITY / f"{sc.name}_leftImg8bit.png",
            out / "openset_panoptic" / "images" / f"{sc.name}.png",
        ):
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first, copy)
        _save(out / "openset_semantic" / "gtFine" / "test" / CITY / f"{sc.name}_gtFine_labelTrainIds.png", sc.train_ids)
        _save(out / "openset_panoptic" / "panoptic_test" / f"{sc.name}.png", encode_panoptic_png(sc.instance_ids))
        segs = [
            {"id": s.id, "category_id": _CATEGORY_ID[s.category], "iscrowd": 0, "area": s.area} for s in sc.segments()
        ]
        images.append({"id": i, "file_name": f"{sc.name}.png", "height": size[0], "width": size[1]})
        annotations.append({"image_id": i, "file_name": f"{sc.name}.png", "segments_info": segs})
    if test:
        (out / "openset_panoptic" / "panoptic_test.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": panoptic_categories()})
        )
    for i in range(outliers):
        image, mask = generate_outlier(i, seed=seed, max_size=size[0] // 2)
        _save(out / "outliers" / "images" / f"{i}.png", image)
        _save(out / "outliers" / "masks" / f"{i}.png", mask.astype(np.uint8) * 255)
    meta = {
        "generator": "mask2anomaly.data.synthetic",
        "version": VERSION,
        "seed": seed,
        "size": list(size),
        "counts": {"train": train, "val": val, "test": test, "outliers": outliers},
        "anomaly_shapes": list(ANOMALY_SHAPES),
        "outlier_shapes": list(OUTLIER_SHAPES),
        "anomaly_materials": list(ANOMALY_MATERIALS),
        "inlier_materials": list(MATERIALS),
        "outlier_materials": list(OUTLIER_MATERIALS),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
