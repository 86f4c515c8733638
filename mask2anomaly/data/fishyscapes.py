"""Fishyscapes validation sets: Lost & Found (``fishyscapes_laf``) and Static (``fishyscapes_static``).

Labels are 0 = inlier, 1 = anomaly, 255 = void. The Fishyscapes benchmark code would read any
other value as void; here another value is reported as unexpected, since it means a wrong file.

Layouts:

- the Mask2Anomaly evaluation layout ``images/<i>.<ext>`` + ``labels_masks/<i>.png`` (both sets; this
  is how ``fs_static`` and ``FS_LostFound`` are distributed by the Mask2Anomaly authors);
- for Lost & Found also the Fishyscapes label release next to the original Lost & Found images, as
  the SMIYC benchmark code expects it: ``labels/val/<fid>_fishy-labels.png`` with
  ``leftImg8bit/{train,test}/<scene>/<fid>_leftImg8bit.png`` under ``laf_root`` (default ``root``).
"""

from __future__ import annotations

from pathlib import Path

from mask2anomaly.data.base import (
    Item,
    Reader,
    Sample,
    require_dir,
)
from mask2anomaly.data.validation import ValidationReader, load_anomaly_sample

_LABEL_SUFFIX = "_fishy-labels.png"
_IMAGE_SUFFIX = "_leftImg8bit.png"


class FishyscapesStaticReader(ValidationReader):
    """Fishyscapes Static validation in the evaluation layout.

    Args:
        root: Folder holding ``images/`` and ``labels_masks/``.
        skip_bad: Record pairing problems instead of raising.
    """


class FishyscapesLafReader(Reader):
    """Fishyscapes Lost & Found validation in either layout of the module docstring.

    Args:
        root: Dataset folder.
        laf_root: Lost & Found folder holding ``leftImg8bit/`` (native layout only).
        skip_bad: Record pairing problems instead of raising.
    """

    def __init__(self, root: str | Path, *, laf_root: str | Path | None = None, skip_bad: bool = False) -> None:
        super().__init__(root, skip_bad=skip_bad)
        if (self.root / "labels_masks").is_dir():
            paired = ValidationReader(self.root, skip_bad=skip_bad)
            self.items, self.problems = paired.items, paired.problems
            return
        expected = f"labels/val/<fid>{_LABEL_SUFFIX} (or images/ + labels_masks/)"
        labels = require_dir(self.root / "labels" / "val", expected)
        laf = Path(laf_root) if laf_root is not None else self.root
        images = require_dir(laf / "leftImg8bit", "Lost & Found leftImg8bit/{train,test}/<scene>/")
        by_fid = {p.name[: -len(_IMAGE_SUFFIX)]: p for p in images.glob(f"*/*/*{_IMAGE_SUFFIX}")}
        for label in sorted(labels.glob(f"*{_LABEL_SUFFIX}")):
            fid = label.name[: -len(_LABEL_SUFFIX)]
            if fid in by_fid:
                self.items.append(Item(fid, by_fid[fid], {"anomaly": label}))
            else:
                self._problem(f"{label}: no Lost & Found image {fid}{_IMAGE_SUFFIX} under {images}")
        self._require_items(labels, expected)

    def load(self, item: Item) -> Sample:
        return load_anomaly_sample(item)
