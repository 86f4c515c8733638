"""AnomalyMix: paste an outlier cut-out into an inlier training image (Mask2Anomaly, Sec. 3.3).

As in the official code: with probability ``probability`` (0.2) per image, one outlier cut-out is
pasted *unscaled* at a uniformly random position of the full-resolution image, before the geometric
and colour augmentation. The cut-out of an outlier image is the union bounding box of its instance
pixels; only the instance pixels are pasted and they get the semantic label
:data:`~mask2anomaly.data.base.UNKNOWN` (254), which the mask losses exclude and the contrastive loss
treats as outlier. Pasted pixels leave their segments (segment areas are recounted).

Outlier pools:

- :class:`CocoOutlierPool`: COCO panoptic images that contain none of
  :data:`~mask2anomaly.data.classes.ANOMALY_MIX_EXCLUDED` and whose sides are both >= 480 px, the
  first 300 in file order; instance pixels = thing segments;
- :class:`FolderOutlierPool`: any folder of cut-outs with masks (nonzero = object), e.g. the
  ``outliers/`` folder of the synthetic benchmark or the official code's COCO outlier masks;
- :class:`SyntheticOutlierPool`: the synthetic outliers generated in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from mask2anomaly.data.base import UNKNOWN, Sample, list_images, read_image, read_label, require_dir
from mask2anomaly.data.classes import ANOMALY_MIX_EXCLUDED
from mask2anomaly.data.coco_panoptic import CocoPanopticReader
from mask2anomaly.data.synthetic import generate_outlier
from mask2anomaly.errors import UserError


@dataclass(frozen=True)
class Cutout:
    """An outlier object to paste.

    Attributes:
        name: Identifier of the source.
        image: ``(h, w, 3)`` uint8 RGB crop.
        mask: ``(h, w)`` bool object pixels.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray


class OutlierPool(Protocol):
    """A sequence of :class:`Cutout`."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Cutout: ...


def _crop_to_mask(name: str, image: np.ndarray, mask: np.ndarray, source: Path) -> Cutout:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise UserError(f"{source}: outlier mask is empty")
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return Cutout(name, image[box], mask[box])


class FolderOutlierPool:
    """Cut-outs from a folder of masks (nonzero = object) and a folder of images with the same stems.

    The default layout is ``images/<n>.<ext>`` + ``masks/<n>.png`` (the synthetic benchmark's
    ``outliers/``). The outlier set of the official Mask2Anomaly code (meta-OoD's
    ``prepare_coco_segmentation.py``: masks 254 = object, 0 = background) is read with
    ``image_dir="train2017", mask_dir="annotations/ood_seg_train2017", limit=300`` on the COCO root.

    Args:
        root: Base folder.
        image_dir: Image folder under ``root``.
        mask_dir: Mask folder under ``root``; every mask needs an image.
        limit: Use only the first ``limit`` masks (sorted by name).
    """

    def __init__(
        self, root: str | Path, *, image_dir: str = "images", mask_dir: str = "masks", limit: int | None = None
    ) -> None:
        self.root = Path(root)
        expected = f"{mask_dir}/<n>.png with {image_dir}/<n>.<ext>"
        images = require_dir(self.root / image_dir, expected)
        masks = require_dir(self.root / mask_dir, expected)
        by_stem = {p.stem: p for p in list_images(images)}
        self.pairs: list[tuple[Path, Path]] = []
        for mask in list_images(masks, "*.png")[:limit]:
            if mask.stem not in by_stem:
                raise UserError(f"{mask}: outlier mask has no image {mask.stem}.* in {images}")
            self.pairs.append((by_stem[mask.stem], mask))
        if not self.pairs:
            raise UserError(f"{masks}: no outlier masks found (expected {expected})")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Cutout:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        mask = read_label(mask_path, image.shape[:2], image_path=image_path) > 0
        return _crop_to_mask(image_path.stem, image, mask, mask_path)


class CocoOutlierPool:
    """Cut-outs of COCO panoptic images chosen by the Mask2Anomaly rule (module docstring).

    Args:
        reader: The COCO panoptic reader (``unknown="none"``).
        max_images: Pool size.
        min_side: Minimum height and width of a chosen image.
        excluded: Category names a chosen image must not contain.
    """

    def __init__(
        self,
        reader: CocoPanopticReader,
        *,
        max_images: int = 300,
        min_side: int = 480,
        excluded: tuple[str, ...] = ANOMALY_MIX_EXCLUDED,
    ) -> None:
        self.reader = reader
        names = {c["id"]: c["name"] for c in reader.categories}
        things = {c["id"] for c in reader.categories if c.get("isthing", 0)}
        self.indices: list[int] = []
        for index, item in enumerate(reader.items):
            segs = reader.segments_info[item.name]
            categories = {s["category_id"] for s in segs}
            if any(names[c] in excluded for c in categories) or not categories & things:
                continue
            if min(reader.image_sizes[item.name]) < min_side:
                continue
            self.indices.append(index)
            if len(self.indices) == max_images:
                break
        if not self.indices:
            raise UserError(f"{reader.root}: no image qualifies as AnomalyMix outlier (min side {min_side} px)")
        self._things = things

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Cutout:
        item = self.reader.items[self.indices[index]]
        sample = self.reader.load(item)
        thing_ids = [s["id"] for s in self.reader.segments_info[item.name] if s["category_id"] in self._things]
        return _crop_to_mask(item.name, sample.image, np.isin(sample.instances, thing_ids), item.labels["panoptic"])


class SyntheticOutlierPool:
    """The synthetic benchmark's outliers, generated in memory (same as its ``outliers/`` folder).

    Args:
        n: Pool size.
        seed: Benchmark seed.
        max_size: Largest cut-out side in pixels.
    """

    def __init__(self, n: int = 300, *, seed: int = 0, max_size: int = 128) -> None:
        self.n, self.seed, self.max_size = n, seed, max_size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Cutout:
        image, mask = generate_outlier(index, seed=self.seed, max_size=self.max_size)
        return Cutout(f"outlier_{index}", image, mask)


def paste(sample: Sample, cutout: Cutout, y: int, x: int) -> Sample:
    """Paste ``cutout`` with its top-left corner at ``(y, x)`` (clipped to the image).

    Pasted pixels: image from the cut-out, semantic :data:`UNKNOWN`, anomaly 1, instance id 0.
    """
    h, w = sample.size
    ch, cw = cutout.mask.shape
    ya, xa, yb, xb = max(y, 0), max(x, 0), min(y + ch, h), min(x + cw, w)
    full = np.zeros((h, w), bool)
    if ya < yb and xa < xb:
        full[ya:yb, xa:xb] = cutout.mask[ya - y : yb - y, xa - x : xb - x]
    image = sample.image.copy()
    image[ya:yb, xa:xb][full[ya:yb, xa:xb]] = cutout.image[ya - y : yb - y, xa - x : xb - x][full[ya:yb, xa:xb]]
    changes: dict = {"image": image}
    if sample.semantic is not None:
        changes["semantic"] = np.where(full, UNKNOWN, sample.semantic).astype(np.uint8)
    if sample.anomaly is not None:
        changes["anomaly"] = np.where(full, 1, sample.anomaly).astype(np.uint8)
    if sample.instances is not None:
        changes["instances"] = np.where(full, 0, sample.instances).astype(np.int32)
    return sample.replace(**changes).recount_segments()


def anomaly_mix(sample: Sample, pool: OutlierPool, rng: np.random.Generator, *, probability: float = 0.2) -> Sample:
    """With probability ``probability``, paste a random cut-out of ``pool`` at a uniform position.

    The position is uniform over the placements that keep the cut-out inside the image (or over
    the image when the cut-out is larger, which crops it).
    """
    if rng.random() >= probability:
        return sample
    cutout = pool[int(rng.integers(len(pool)))]
    h, w = sample.size
    ch, cw = cutout.mask.shape
    y = int(rng.integers(0, h - ch + 1)) if ch <= h else -int(rng.integers(0, ch - h + 1))
    x = int(rng.integers(0, w - cw + 1)) if cw <= w else -int(rng.integers(0, cw - w + 1))
    return paste(sample, cutout, y, x)
