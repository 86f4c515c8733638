"""StreetHazards (Hendrycks et al.), the release layout: training, validation and test splits.

``train/images/training/t1-3``, ``train/images/validation/t4`` and ``test/images/test/{t5,t6}``
hold the images, the same paths under ``annotations`` the labels (same names). Raw annotation
values: 1 unlabeled, 2 building, 3 fence, 4 other, 5 pedestrian, 6 pole, 7 road line, 8 road,
9 sidewalk, 10 vegetation, 11 car, 12 wall, 13 traffic sign, 14 anomaly (the dataset authors'
``create_dataset.py`` table, stored one higher).

**Known classes** (both reference codes): 12, raw 1 "unlabeled" trained as class 0 "background",
raw 2, 3 -> 1, 2, raw 4 "other" void, raw 5..13 -> 3..11; the anomaly is
:data:`~mask2anomaly.data.base.UNKNOWN` in the semantic map. Sources: Mask2Anomaly's
``mask2former/data/datasets/register_street_hazard.py`` (13 names: "Background", the 11 named
classes, "void"; ``ignore_label`` 12) and DenseHybrid's ``data/datasets/street_hazards/
streethazards_full.py`` (subtract 1, "other" to the ignore id 12, shift the rest down).

**Anomaly map**, one named mapping per reference (``labels=``):

- ``"mask2anomaly"`` (default, the paper's): raw 1 and 4 void, 14 anomaly, the rest inlier
  (``anomaly_utils/anomaly_inference_streethazard.py`` of the Mask2Anomaly repository, the script
  behind the paper's StreetHazards numbers);
- ``"densehybrid"``: only raw 4 void, raw 1 an inlier (``streethazards_test.py`` of DenseHybrid,
  ``StreetHazardsTestOOD``).
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
from mask2anomaly.data.classes import LabelSpace
from mask2anomaly.errors import UserError

CLASS_NAMES: tuple[str, ...] = (
    "background",
    "building",
    "fence",
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

LABEL_SPACE = LabelSpace(CLASS_NAMES, frozenset())
"""The 12 known classes; StreetHazards has no instance labels, so no thing class."""

_RAW_OTHER = 4
_RAW_ANOMALY = 14
_VOID_RAW = {"mask2anomaly": (1, _RAW_OTHER), "densehybrid": (_RAW_OTHER,)}
"""Raw values void in the anomaly map, per named mapping."""

_SPLIT_DIRS = {
    "train": ("train", "training", "t1-3"),
    "val": ("train", "validation", "t4"),
    "t5": ("test", "test", "t5"),
    "t6": ("test", "test", "t6"),
}
"""Folders of each split: (part, subset, folder)."""

_SEMANTIC = np.full(256, VOID, dtype=np.uint8)
_SEMANTIC[[1, 2, 3]] = [0, 1, 2]
_SEMANTIC[5:14] = np.arange(3, 12)
_SEMANTIC[_RAW_ANOMALY] = UNKNOWN


class StreetHazardsReader(Reader):
    """StreetHazards, one split.

    Args:
        root: Dataset folder holding ``train/`` and ``test/``.
        split: ``train`` (t1-3), ``val`` (t4), ``t5`` or ``t6``.
        labels: Named mapping of the anomaly map, ``mask2anomaly`` or ``densehybrid`` (module docstring).
        skip_bad: Record unpaired images instead of raising.
    """

    label_space = LABEL_SPACE

    def __init__(
        self, root: str | Path, split: str = "t5", *, labels: str = "mask2anomaly", skip_bad: bool = False
    ) -> None:
        super().__init__(root, skip_bad=skip_bad)
        if labels not in _VOID_RAW:
            raise UserError(f"StreetHazards labels must be one of {', '.join(_VOID_RAW)}, got {labels!r}")
        self.labels = labels
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
        anomaly[np.isin(raw, _VOID_RAW[self.labels])] = VOID
        return Sample(item.name, image, semantic=_SEMANTIC[raw], anomaly=anomaly)
