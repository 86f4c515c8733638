"""StreetHazards (Hendrycks et al.), the release layout: training, validation and test splits.

``train/images/training/t1-3``, ``train/images/validation/t4`` and ``test/images/test/{t5,t6}``
hold the images, the same paths under ``annotations`` the labels (same names). Raw
annotation values: 1 unlabeled, 2 building, 3 fence, 4 other, 5 pedestrian, 6 pole, 7 road line,
8 road, 9 sidewalk, 10 vegetation, 11 car, 12 wall, 13 traffic sign, 14 anomaly.

Semantic map (12 known classes, as DenseHybrid): raw 2..13 -> 0..11, unlabeled -> void, anomaly ->
:data:`~mask2anomaly.data.base.UNKNOWN`. Anomaly map, two conventions (``convention``):

- ``"mask2anomaly"`` (default, the Mask2Anomaly evaluation script): 1 (unlabeled) and 4 (other)
  -> void, 14 -> anomaly, the rest inlier;
- ``"densehybrid"``: only unlabeled is void.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mask2anomaly.data.base import (
    UNKNOWN,
    VOID,
    Item,
    Reader,
    Sample,
    check_values,
    list_images,
    read_image,
    read_label,
    require_dir,
)
from mask2anomaly.errors import UserError

CLASS_NAMES: tuple[str, ...] = (
    "building",
    "fence",
    "other",
    "pedestrian",
    "pole",
    "road line",
    "road",
    "sidewalk",
    "vegetation",
    "car",
    "wall",
    "traffic sign",
)
"""The 12 known classes, by semantic index."""

_RAW_ANOMALY = 14
_VOID_RAW = {"mask2anomaly": (1, 4), "densehybrid": (1,)}

_SPLIT_DIRS = {
    "train": ("train", "training", "t1-3"),
    "val": ("train", "validation", "t4"),
    "t5": ("test", "test", "t5"),
    "t6": ("test", "test", "t6"),
}
"""Folders of each split: (part, subset, folder)."""

_SEMANTIC = np.full(256, VOID, dtype=np.uint8)
_SEMANTIC[2:14] = np.arange(12)
_SEMANTIC[_RAW_ANOMALY] = UNKNOWN


class StreetHazardsReader(Reader):
    """StreetHazards test split.

    Args:
        root: Dataset folder holding ``test/``.
        split: ``train`` (t1-3), ``val`` (t4), ``t5`` or ``t6``.
        convention: Which raw values are void in the anomaly map (module docstring).
        skip_bad: Record unpaired images instead of raising.
    """

    def __init__(
        self, root: str | Path, split: str = "t5", *, convention: str = "mask2anomaly", skip_bad: bool = False
    ) -> None:
        super().__init__(root, skip_bad=skip_bad)
        if convention not in _VOID_RAW:
            raise UserError(f"StreetHazards convention must be one of {sorted(_VOID_RAW)}, got {convention!r}")
        self.convention = convention
        if split not in _SPLIT_DIRS:
            raise UserError(f"StreetHazards split must be one of {', '.join(_SPLIT_DIRS)}, got {split!r}")
        part, subset, folder = _SPLIT_DIRS[split]
        expected = f"{part}/images/{subset}/{folder}/*.png with {part}/annotations/{subset}/{folder}/*.png"
        images = require_dir(self.root / part / "images" / subset / folder, expected)
        labels = require_dir(self.root / part / "annotations" / subset / folder, expected)
        for image in list_images(images):
            label = labels / f"{image.stem}.png"
            if label.is_file():
                self.items.append(Item(image.stem, image, {"semantic": label}))
            else:
                self._problem(f"{image}: no label file {label}")
        self._require_items(images, expected)

    def load(self, item: Item) -> Sample:
        image = read_image(item.image)
        path = item.labels["semantic"]
        raw = read_label(path, image.shape[:2], image_path=item.image)
        check_values(raw, range(1, 15), path)
        anomaly = (raw == _RAW_ANOMALY).astype(np.uint8)
        anomaly[np.isin(raw, _VOID_RAW[self.convention])] = VOID
        return Sample(item.name, image, semantic=_SEMANTIC[raw], anomaly=anomaly)
