"""The evaluation layout of the Mask2Anomaly authors: ``images/<i>.<ext>`` + ``labels_masks/<i>.png``.

Labels are 8-bit: 0 = inlier, 1 = anomaly, 255 = void. ``fs_static``, ``RoadAnomaly21``,
``FS_LostFound`` (and the synthetic benchmark's anomaly test split) use it. The SMIYC and Fishyscapes
readers reuse :class:`PairedFolderReader` with their own label file names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mask2anomaly.data.base import (
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

ANOMALY_VALUES = frozenset({0, 1, VOID})
"""Values of an anomaly label map: inlier, anomaly, void."""


def load_anomaly_sample(item: Item) -> Sample:
    """An image with its anomaly map (values checked against :data:`ANOMALY_VALUES`)."""
    image = read_image(item.image)
    path = item.labels["anomaly"]
    raw = read_label(path, image.shape[:2], image_path=item.image)
    check_values(raw, ANOMALY_VALUES, path)
    return Sample(item.name, image, anomaly=raw)


def same_stem_png(stem: str) -> str:
    """Label file name ``<stem>.png``."""
    return f"{stem}.png"


class PairedFolderReader(Reader):
    """Images in one folder, one anomaly label per image in another.

    Args:
        root: Dataset folder.
        label_name: Label file name of an image stem (a picklable function, for data loader workers).
        label_glob: Pattern of the label files (a match without an image is a pairing problem).
        unlabeled_ok: Images without a label are left out silently (hidden test sets) instead of
            being a pairing problem; :attr:`unlabeled` counts them.
        skip_bad: Record pairing problems instead of raising.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        label_name: Callable[[str], str] = same_stem_png,
        label_glob: str = "*.png",
        unlabeled_ok: bool = False,
        skip_bad: bool = False,
    ) -> None:
        super().__init__(root, skip_bad=skip_bad)
        self.unlabeled = 0
        expected = f"images/<name>.<ext> with labels_masks/{label_name('<name>')}"
        images = require_dir(self.root / "images", expected)
        labels = require_dir(self.root / "labels_masks", expected)
        paired: set[str] = set()
        for image in list_images(images):
            label = labels / label_name(image.stem)
            if label.is_file():
                self.items.append(Item(image.stem, image, {"anomaly": label}))
                paired.add(label.name)
            elif unlabeled_ok:
                self.unlabeled += 1
            else:
                self._problem(f"{image}: no label file {label}")
        for label in sorted(labels.glob(label_glob)):
            if label.name not in paired:
                self._problem(f"{label}: label has no image in {images}")
        self._require_items(images, expected)

    def load(self, item: Item) -> Sample:
        return load_anomaly_sample(item)


class ValidationReader(PairedFolderReader):
    """``images/<i>.<ext>`` + ``labels_masks/<i>.png`` (0 inlier, 1 anomaly, 255 void).

    Args:
        root: Folder of one set, e.g. ``validation/fs_static``.
        skip_bad: Record pairing problems instead of raising.
    """

    def __init__(self, root: str | Path, *, skip_bad: bool = False) -> None:
        super().__init__(root, skip_bad=skip_bad)
