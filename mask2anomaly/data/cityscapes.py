"""Cityscapes (official layout): semantic trainIds and panoptic segments from ``instanceIds``.

Layout: ``leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png`` with
``gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png`` (or ``labelIds``, mapped through the
official table) and optionally ``{stem}_gtFine_instanceIds.png`` (id = labelId*1000+k for thing
instances, labelId for stuff and crowd regions).

Open-set extension (``open_set=True``): trainId files may hold :data:`~mask2anomaly.data.base.UNKNOWN`
(254) for objects of unknown classes; the sample then carries an anomaly map (254 -> 1). The
synthetic benchmark writes its open-set semantic split this way.
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
    Segment,
    check_values,
    read_image,
    read_label,
    segments_from_ids,
)
from mask2anomaly.data.classes import CITYSCAPES, CITYSCAPES_LABELS, LABEL_ID_TO_TRAIN_ID, LABEL_IDS, NUM_CLASSES
from mask2anomaly.errors import UserError

_IMAGE_SUFFIX = "_leftImg8bit"
_TRAIN_IDS = set(range(NUM_CLASSES)) | {VOID}


class CityscapesReader(Reader):
    """Cityscapes-layout reader.

    Args:
        root: Folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: Sub-folder of both (``train``, ``val``, ``test``).
        open_set: Accept and decode the unknown label 254 (see module docstring).
        gt: Name of the label folder and file infix (``gtFine``; ``gtCoarse`` for coarse labels).
        skip_bad: Record unpaired images instead of raising.
    """

    label_space = CITYSCAPES

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        *,
        open_set: bool = False,
        gt: str = "gtFine",
        skip_bad: bool = False,
    ) -> None:
        super().__init__(root, skip_bad=skip_bad)
        self.split = split
        self.open_set = open_set
        self.gt = gt
        image_dir = self.root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise UserError(
                f"{image_dir}: folder not found (expected the Cityscapes layout "
                f"leftImg8bit/{split}/{{city}}/*_leftImg8bit.png with {gt}/{split}/{{city}}/ labels)"
            )
        for image in sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}.*")):
            stem = image.name[: image.name.index(_IMAGE_SUFFIX)]
            label_dir = self.root / gt / split / image.parent.name
            labels = {
                role: label_dir / f"{stem}_{gt}_{kind}.png"
                for role, kind in (
                    ("train_ids", "labelTrainIds"),
                    ("label_ids", "labelIds"),
                    ("instances", "instanceIds"),
                )
            }
            labels = {role: p for role, p in labels.items() if p.is_file()}
            if "train_ids" not in labels and "label_ids" not in labels:
                self._problem(f"{image}: no label file {label_dir / f'{stem}_{gt}_labelTrainIds.png'}")
                continue
            self.items.append(Item(f"{image.parent.name}/{stem}", image, labels))
        self._require_items(image_dir, f"{{city}}/*{_IMAGE_SUFFIX}.png images")

    def load(self, item: Item) -> Sample:
        image = read_image(item.image)
        size = image.shape[:2]
        if "train_ids" in item.labels:
            path = item.labels["train_ids"]
            semantic = read_label(path, size, image_path=item.image)
            allowed = _TRAIN_IDS | {UNKNOWN} if self.open_set else _TRAIN_IDS
            check_values(semantic, allowed, path)
        else:
            path = item.labels["label_ids"]
            label_ids = read_label(path, size, image_path=item.image)
            check_values(label_ids, LABEL_IDS, path)
            semantic = LABEL_ID_TO_TRAIN_ID[label_ids]
        anomaly = None
        if self.open_set:
            anomaly = np.where(semantic == VOID, VOID, (semantic == UNKNOWN).astype(np.uint8)).astype(np.uint8)
        instances = segments = None
        if "instances" in item.labels:
            instances, segments = decode_instance_ids(
                read_label(item.labels["instances"], size, image_path=item.image), item.labels["instances"]
            )
        return Sample(item.name, image, semantic, anomaly, instances, segments)


_THING_BY_ID = {lab.id: lab.is_thing for lab in CITYSCAPES_LABELS}


def decode_instance_ids(raw: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[Segment, ...]]:
    """Turn a Cityscapes ``instanceIds`` map into segment ids and segments.

    Pixel value ``v >= 1000`` is thing instance ``v`` of labelId ``v // 1000``; ``v < 1000`` is the
    stuff (or thing-crowd) region of labelId ``v``. Classes without a trainId become id 0.

    Args:
        raw: ``(H, W)`` int instanceIds.
        path: The file, named in errors.

    Returns:
        ``(H, W)`` int32 segment ids (the raw values, 0 where void) and the segments
        (category = trainId).
    """
    label_ids = np.where(raw >= 1000, raw // 1000, raw)
    check_values(label_ids, LABEL_IDS, path)
    train_ids = LABEL_ID_TO_TRAIN_ID[label_ids]
    instances = np.where(train_ids == VOID, 0, raw).astype(np.int32)
    info = {}
    for v in np.unique(instances):
        v = int(v)
        if v == 0:
            continue
        label_id = v // 1000 if v >= 1000 else v
        is_thing = _THING_BY_ID[label_id]
        info[v] = (int(LABEL_ID_TO_TRAIN_ID[label_id]), is_thing, is_thing and v < 1000)
    return instances, segments_from_ids(instances, info)
