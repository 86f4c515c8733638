"""COCO panoptic (JSON + PNG), with the open-set splits of EOPSN.

Opened on the panoptic JSON file. The segment PNGs are in the folder named like the JSON file
without ``.json`` (panopticapi convention; ``panoptic_val2017.json`` -> ``panoptic_val2017/``); the
images are found in ``image_dir``, else the first existing of: ``images/`` and ``input_images/``
next to the JSON file, and ``../<name>`` for ``annotations/panoptic_<name>.json`` (COCO release).
A PNG pixel's segment id is ``R + 256 G + 256^2 B``; 0 is void.

Label space: the JSON categories minus the unknown ones, in JSON order, indexed 0..K-1. With an
open-set split (``unknown="5" | "10" | "20"``, or ``"synthetic"`` for the synthetic benchmark), the
unknown categories' segments are handled per ``mode``:

- ``"train"``: void (semantic 255, segment id 0, segment dropped);
- ``"eval"``: the unknown class (semantic :data:`~mask2anomaly.data.base.UNKNOWN`, segment category
  :data:`~mask2anomaly.data.base.UNKNOWN_CATEGORY`, anomaly map 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mask2anomaly.data.base import (
    UNKNOWN,
    UNKNOWN_CATEGORY,
    VOID,
    Item,
    Reader,
    Sample,
    Segment,
    read_image,
)
from mask2anomaly.data.classes import COCO_OPEN_SET_SPLITS, LabelSpace
from mask2anomaly.errors import UserError


def decode_panoptic_png(path: Path, size: tuple[int, int] | None = None, image_path: Path | None = None) -> np.ndarray:
    """Decode a panoptic PNG into ``(H, W)`` int32 segment ids (``R + 256 G + 256^2 B``).

    Raises:
        UserError: Missing, corrupt or wrong-size file.
    """
    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                raise UserError(f"{path}: panoptic PNG must be RGB, found mode {im.mode}")
            rgb = np.asarray(im).astype(np.int32)
    except FileNotFoundError:
        raise UserError(f"{path}: panoptic PNG not found") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path}: cannot decode panoptic PNG ({err})") from None
    if size is not None and rgb.shape[:2] != tuple(size):
        other = f"its image {image_path.name}" if image_path is not None else "the image"
        raise UserError(f"{path}: label is {rgb.shape[1]}x{rgb.shape[0]} but {other} is {size[1]}x{size[0]} (WxH)")
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def encode_panoptic_png(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_panoptic_png`: ``(H, W)`` ids -> ``(H, W, 3)`` uint8 RGB."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


class CocoPanopticReader(Reader):
    """COCO-format panoptic segmentation.

    Args:
        root: The panoptic JSON file.
        unknown: Open-set split: a key of :data:`~mask2anomaly.data.classes.COCO_OPEN_SET_SPLITS`.
        mode: ``"train"`` or ``"eval"`` (module docstring).
        image_dir: Folder of the images (default: searched, module docstring).
        skip_bad: Record annotations whose image or PNG is missing instead of raising.

    Attributes:
        categories: The JSON categories (dicts).
        class_names: Names of the known classes, by contiguous index.
        thing_classes: Contiguous indices of the known thing classes.
        label_space: Both together: the classes the panoptic merge, the unknown-instance mining and
            PQ things / stuff use on this dataset.
        segments_info: The JSON ``segments_info`` of every sample, by name.
        image_sizes: ``(H, W)`` of every sample from the JSON, by name.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        unknown: str = "none",
        mode: str = "eval",
        image_dir: str | Path | None = None,
        skip_bad: bool = False,
    ) -> None:
        super().__init__(root, skip_bad=skip_bad)
        if unknown not in COCO_OPEN_SET_SPLITS:
            raise UserError(f"open-set split must be one of {sorted(COCO_OPEN_SET_SPLITS)}, got {unknown!r}")
        if mode not in ("train", "eval"):
            raise UserError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.mode = mode
        data = self._read_json(self.root)
        self.categories: list[dict[str, Any]] = data["categories"]
        names = {c["name"] for c in self.categories}
        unknown_names = set(COCO_OPEN_SET_SPLITS[unknown])
        missing = sorted(unknown_names - names)
        if missing:
            raise UserError(f"{self.root}: open-set split {unknown!r} names categories not in the file: {missing}")
        known = [c for c in self.categories if c["name"] not in unknown_names]
        self.class_names = tuple(c["name"] for c in known)
        self.thing_classes = frozenset(i for i, c in enumerate(known) if c.get("isthing", 0))
        self.label_space = LabelSpace(self.class_names, self.thing_classes)
        self._category = {c["id"]: i for i, c in enumerate(known)}
        self._category.update({c["id"]: UNKNOWN_CATEGORY for c in self.categories if c["name"] in unknown_names})
        self._is_thing = {c["id"]: bool(c.get("isthing", 0)) for c in self.categories}
        self._has_unknown = bool(unknown_names)

        png_dir = self.root.with_suffix("")
        if not png_dir.is_dir():
            raise UserError(f"{png_dir}: folder not found (expected the panoptic PNGs next to {self.root.name})")
        images = self._find_image_dir(image_dir)
        by_id = {img["id"]: img for img in data["images"]}
        self.segments_info: dict[str, list[dict[str, Any]]] = {}
        self.image_sizes: dict[str, tuple[int, int]] = {}
        for ann in data["annotations"]:
            info = by_id.get(ann["image_id"])
            if info is None:
                self._problem(f"{self.root}: annotation {ann['file_name']} has unknown image id {ann['image_id']}")
                continue
            image, png = images / info["file_name"], png_dir / ann["file_name"]
            if not image.is_file():
                self._problem(f"{image}: image file not found (listed in {self.root.name})")
                continue
            if not png.is_file():
                self._problem(f"{png}: panoptic PNG not found (listed in {self.root.name})")
                continue
            name = Path(info["file_name"]).stem
            self.items.append(Item(name, image, {"panoptic": png}))
            self.segments_info[name] = ann["segments_info"]
            self.image_sizes[name] = (int(info["height"]), int(info["width"]))
        self._require_items(self.root, "annotations with images and panoptic PNGs")

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: file not found (expected a COCO panoptic JSON file)") from None
        except IsADirectoryError:
            raise UserError(f"{path}: is a folder; give the panoptic JSON file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not valid JSON ({err})") from None
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise UserError(f"{path}: not a COCO panoptic file (no {key!r} key)")
        return data

    def _find_image_dir(self, image_dir: str | Path | None) -> Path:
        if image_dir is not None:
            candidates = [Path(image_dir)]
        else:
            here = self.root.parent
            candidates = [here / "images", here / "input_images"]
            if self.root.stem.startswith("panoptic_"):
                candidates.append(here.parent / self.root.stem[len("panoptic_") :])
        for c in candidates:
            if c.is_dir():
                return c
        raise UserError(f"{self.root}: no image folder found (tried {', '.join(str(c) for c in candidates)})")

    def load(self, item: Item) -> Sample:
        image = read_image(item.image)
        path = item.labels["panoptic"]
        ids = decode_panoptic_png(path, image.shape[:2], item.image)
        infos = self.segments_info[item.name]
        listed = {s["id"] for s in infos}
        present = set(np.unique(ids).tolist()) - {0}
        stray = sorted(present - listed)
        if stray:
            raise UserError(f"{path}: segment ids {stray[:8]} are not in {self.root.name}")
        semantic = np.full(ids.shape, VOID, dtype=np.uint8)
        instances = ids.copy()
        segments = []
        for s in infos:
            if s["category_id"] not in self._category:
                raise UserError(f"{self.root}: segment {s['id']} of {item.name} has bad category {s['category_id']}")
            category = self._category[s["category_id"]]
            where = ids == s["id"]
            if category == UNKNOWN_CATEGORY and self.mode == "train":
                instances[where] = 0
                continue
            semantic[where] = UNKNOWN if category == UNKNOWN_CATEGORY else category
            segments.append(
                Segment(s["id"], category, self._is_thing[s["category_id"]], bool(s.get("iscrowd", 0)), int(s["area"]))
            )
        anomaly = None
        if self._has_unknown and self.mode == "eval":
            anomaly = np.where(semantic == VOID, VOID, (semantic == UNKNOWN).astype(np.uint8)).astype(np.uint8)
        return Sample(item.name, image, semantic, anomaly, instances, tuple(segments))
