"""Road Anomaly (Lis et al., ICCV 2019), original release layout.

``frame_list.json`` lists the image files; ``frames/<name>.<jpg|webp>`` are the images and
``frames/<name>.labels/labels_semantic.png`` the labels (0 = inlier, **2 = anomaly**, remapped to 1
here). ``labels_instance.png`` (0 = background, k = anomaly instance k) exists for some frames only;
``Sample.instances`` is ``None`` for the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mask2anomaly.data.base import Item, Reader, Sample, check_values, read_image, read_label, require_dir
from mask2anomaly.errors import UserError


class RoadAnomalyReader(Reader):
    """Road Anomaly original release.

    Args:
        root: Folder holding ``frame_list.json`` and ``frames/``.
        skip_bad: Record frames whose image or label is missing instead of raising.
    """

    def __init__(self, root: str | Path, *, skip_bad: bool = False) -> None:
        super().__init__(root, skip_bad=skip_bad)
        frames = require_dir(self.root / "frames", "frame_list.json and frames/<name>.jpg")
        list_path = self.root / "frame_list.json"
        try:
            names = json.loads(list_path.read_text())
        except FileNotFoundError:
            raise UserError(f"{list_path}: file not found (expected the Road Anomaly frame list)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{list_path}: not valid JSON ({err})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UserError(f"{list_path}: expected a JSON list of image file names")
        for name in names:
            stem = Path(name).stem
            image = frames / name
            if not image.is_file():
                alternatives = [p for p in frames.glob(f"{stem}.*") if p.is_file()]
                if not alternatives:
                    self._problem(f"{image}: image file not found (listed in {list_path.name})")
                    continue
                image = alternatives[0]
            label_dir = frames / f"{stem}.labels"
            semantic = label_dir / "labels_semantic.png"
            if not semantic.is_file():
                self._problem(f"{image}: no label file {semantic}")
                continue
            labels = {"anomaly": semantic}
            if (label_dir / "labels_instance.png").is_file():
                labels["instances"] = label_dir / "labels_instance.png"
            self.items.append(Item(stem, image, labels))
        self._require_items(list_path, "image names in frame_list.json")

    def load(self, item: Item) -> Sample:
        image = read_image(item.image)
        path = item.labels["anomaly"]
        raw = read_label(path, image.shape[:2], image_path=item.image)
        check_values(raw, {0, 2}, path)
        anomaly = (raw == 2).astype(np.uint8)
        instances = None
        if "instances" in item.labels:
            instances = read_label(item.labels["instances"], image.shape[:2], image_path=item.image).astype(np.int32)
        return Sample(item.name, image, anomaly=anomaly, instances=instances)
