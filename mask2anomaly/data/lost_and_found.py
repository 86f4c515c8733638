"""Lost and Found (Pinggera et al., IROS 2016), its own Cityscapes-like layout.

``leftImg8bit/{split}/<scene>/<fid>_leftImg8bit.png`` with
``gtCoarse/{split}/<scene>/<fid>_gtCoarse_labelIds.png``: 0 = void, 1 = free road (inlier),
2..200 = obstacle (anomaly), as read by the SMIYC benchmark. ``*_gtCoarse_instanceIds.png``, when
present, gives the obstacle instances (0 = none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mask2anomaly.data.base import (
    VOID,
    Item,
    Reader,
    Sample,
    check_values,
    read_image,
    read_label,
    require_dir,
)

_IMAGE_SUFFIX = "_leftImg8bit"
_ALLOWED = range(201)


class LostAndFoundReader(Reader):
    """Lost and Found obstacles.

    Args:
        root: Folder holding ``leftImg8bit/`` and ``gtCoarse/``.
        split: ``train`` or ``test``.
        skip_bad: Record unpaired images instead of raising.
    """

    def __init__(self, root: str | Path, split: str = "test", *, skip_bad: bool = False) -> None:
        super().__init__(root, skip_bad=skip_bad)
        expected = f"leftImg8bit/{split}/<scene>/*_leftImg8bit.png with gtCoarse/{split}/<scene>/*_labelIds.png"
        images = require_dir(self.root / "leftImg8bit" / split, expected)
        for image in sorted(images.glob(f"*/*{_IMAGE_SUFFIX}.*")):
            fid = image.name[: image.name.index(_IMAGE_SUFFIX)]
            label_dir = self.root / "gtCoarse" / split / image.parent.name
            label = label_dir / f"{fid}_gtCoarse_labelIds.png"
            if not label.is_file():
                self._problem(f"{image}: no label file {label}")
                continue
            labels = {"anomaly": label}
            instances = label_dir / f"{fid}_gtCoarse_instanceIds.png"
            if instances.is_file():
                labels["instances"] = instances
            self.items.append(Item(fid, image, labels))
        self._require_items(images, expected)

    def load(self, item: Item) -> Sample:
        image = read_image(item.image)
        path = item.labels["anomaly"]
        raw = read_label(path, image.shape[:2], image_path=item.image)
        check_values(raw, _ALLOWED, path)
        anomaly = np.full(raw.shape, VOID, dtype=np.uint8)
        anomaly[raw == 1] = 0
        anomaly[raw >= 2] = 1
        instances = None
        if "instances" in item.labels:
            instances = read_label(item.labels["instances"], image.shape[:2], image_path=item.image)
            instances = np.where(anomaly == 1, instances, 0).astype(np.int32)
        return Sample(item.name, image, anomaly=anomaly, instances=instances)
