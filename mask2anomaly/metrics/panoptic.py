"""Panoptic quality (PQ, SQ, RQ) as panopticapi computes it, with EOPSN's unknown class.

Reproduces ``panopticapi/evaluation.py`` (COCO panoptic format: a JSON file of segments per image
and PNGs whose colour encodes the segment id as ``R + 256 G + 256^2 B``; id 0 is void):

- predicted segment areas are counted in the PNG (every PNG id must be in the JSON and vice
  versa); ground-truth areas come from the JSON's ``area`` fields;
- a prediction matches a non-crowd ground-truth segment of the same category when
  IoU > 0.5, with union = |pred| + |gt| - |pred ∩ gt| - |pred ∩ void|;
- unmatched non-crowd ground truth is a FN; an unmatched prediction is a FP unless more than half
  of it lies on void or on the (last listed) crowd segment of its category;
- per category PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP (0 without TP),
  RQ = TP / (TP + FP/2 + FN/2); averages over the categories with TP + FP + FN > 0, for all
  categories, things (``isthing`` = 1) and stuff.

Unknown objects (EOPSN, ``jd730/EOPSN`` ``lib/evaluation.py``): the ground-truth segments of the
unknown categories get category id -1 (:data:`UNKNOWN`), predictions label unknown objects -1;
matching is unchanged; "unknown" is the PQ of class -1 alone, and all/things/stuff cover the
known categories only (a prediction may not use an unknown category's original id).

State: per category, summed IoU and TP/FP/FN counts (mergeable by addition).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mask2anomaly.errors import UserError
from mask2anomaly.metrics._common import warn_undefined

UNKNOWN = -1
"""Category id of the unknown class (EOPSN)."""
_OFFSET = 256 * 256 * 256
_VOID = 0


@dataclass(frozen=True)
class PQValues:
    """PQ, SQ, RQ (fractions in [0, 1]) averaged over ``n`` categories."""

    pq: float
    sq: float
    rq: float
    n: int


@dataclass(frozen=True)
class PanopticResult:
    """Panoptic quality for all known categories, known things, stuff, and the unknown class
    (``None`` when no unknown categories were given)."""

    all: PQValues
    things: PQValues
    stuff: PQValues
    unknown: PQValues | None


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids ``(H, W)`` from a COCO panoptic PNG ``(H, W, 3)``: R + 256 G + 256^2 B."""
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


@dataclass
class PanopticQuality:
    """Streaming panoptic quality with ``reset / update / merge / compute``.

    Args:
        categories: the dataset's category list (dicts with ``id`` and ``isthing``).
        unknown_ids: original ids of the categories evaluated as the unknown class (may be empty).
    """

    categories: Sequence[dict[str, Any]]
    unknown_ids: frozenset[int] = frozenset()
    _stats: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._isthing = {int(c["id"]): bool(c.get("isthing", 0)) for c in self.categories}
        missing = set(self.unknown_ids) - set(self._isthing)
        if missing:
            raise UserError(f"unknown categories {sorted(missing)} are not in the category list")
        self._known = {cid for cid in self._isthing if cid not in self.unknown_ids}

    def reset(self) -> None:
        """Forget every image seen."""
        self._stats = {}

    def _stat(self, category: int) -> np.ndarray:
        return self._stats.setdefault(category, np.zeros(4))

    def update(
        self,
        gt_ids: np.ndarray,
        gt_segments: Iterable[dict[str, Any]],
        pred_ids: np.ndarray,
        pred_segments: Iterable[dict[str, Any]],
        source: str = "image",
    ) -> None:
        """Add one image.

        Args:
            gt_ids: ``(H, W)`` ground-truth segment ids (0 = void).
            gt_segments: ground-truth ``segments_info`` (``id``, ``category_id``, ``iscrowd``,
                ``area``).
            pred_ids: ``(H, W)`` predicted segment ids (0 = void).
            pred_segments: predicted ``segments_info`` (``id``, ``category_id``).
            source: image name for error messages.
        """
        if gt_ids.shape != pred_ids.shape:
            raise UserError(f"{source}: ground truth {gt_ids.shape} and prediction {pred_ids.shape} differ")
        gt = {}
        for seg in gt_segments:
            cat = int(seg["category_id"])
            if "area" not in seg:
                raise UserError(f"{source}: ground-truth segment {seg['id']} has no 'area'")
            gt[int(seg["id"])] = (UNKNOWN if cat in self.unknown_ids else cat, int(seg.get("iscrowd", 0)), seg["area"])
        pred_cat = {int(seg["id"]): int(seg["category_id"]) for seg in pred_segments}
        pred_area: dict[int, int] = {}
        labels, counts = np.unique(pred_ids, return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            if label not in pred_cat:
                if label == _VOID:
                    continue
                raise UserError(f"{source}: predicted segment {label} is in the PNG but not in the JSON")
            cat = pred_cat[label]
            if cat not in self._known and not (cat == UNKNOWN and self.unknown_ids):
                raise UserError(f"{source}: predicted segment {label} has unexpected category_id {cat}")
            pred_area[label] = count
        missing = sorted(set(pred_cat) - set(pred_area))
        if missing:
            raise UserError(f"{source}: predicted segments {missing[:5]} are in the JSON but not in the PNG")

        pairs, overlaps = np.unique(gt_ids.astype(np.uint64) * _OFFSET + pred_ids, return_counts=True)
        overlap = {
            (int(p // _OFFSET), int(p % _OFFSET)): int(n)
            for p, n in zip(pairs.tolist(), overlaps.tolist(), strict=True)
        }
        gt_matched, pred_matched = set(), set()
        for (g, p), inter in overlap.items():
            if g not in gt or p not in pred_area:
                continue
            cat, crowd, area = gt[g]
            if crowd == 1 or cat != pred_cat[p]:
                continue
            union = pred_area[p] + area - inter - overlap.get((_VOID, p), 0)
            iou = inter / union
            if iou > 0.5:
                stat = self._stat(cat)
                stat[0] += iou
                stat[1] += 1
                gt_matched.add(g)
                pred_matched.add(p)
        crowd_of: dict[int, int] = {}
        for g, (cat, crowd, _) in gt.items():
            if g in gt_matched:
                continue
            if crowd == 1:
                crowd_of[cat] = g
                continue
            self._stat(cat)[3] += 1
        for p, area in pred_area.items():
            if p in pred_matched:
                continue
            ignored = overlap.get((_VOID, p), 0)
            cat = pred_cat[p]
            if cat in crowd_of:
                ignored += overlap.get((crowd_of[cat], p), 0)
            if ignored / area > 0.5:
                continue
            self._stat(cat)[2] += 1

    def merge(self, other: PanopticQuality) -> None:
        """Add the images of ``other``."""
        for cat, stat in other._stats.items():
            self._stat(cat)[:] += stat

    def _average(self, categories: Iterable[int], name: str) -> PQValues:
        pq = sq = rq = 0.0
        n = 0
        for cat in categories:
            iou, tp, fp, fn = self._stats.get(cat, np.zeros(4))
            if tp + fp + fn == 0:
                continue
            n += 1
            pq += iou / (tp + 0.5 * fp + 0.5 * fn)
            sq += iou / tp if tp != 0 else 0.0
            rq += tp / (tp + 0.5 * fp + 0.5 * fn)
        if n == 0:
            nan = warn_undefined(f"PQ ({name})", "no category of this group occurs")
            return PQValues(nan, nan, nan, 0)
        return PQValues(pq / n, sq / n, rq / n, n)

    def compute(self) -> PanopticResult:
        """PQ/SQ/RQ for all known categories, known things, stuff, and the unknown class."""
        known = sorted(self._known)
        return PanopticResult(
            all=self._average(known, "all"),
            things=self._average([c for c in known if self._isthing[c]], "things"),
            stuff=self._average([c for c in known if not self._isthing[c]], "stuff"),
            unknown=self._average([UNKNOWN], "unknown") if self.unknown_ids else None,
        )


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None


def _read_ids(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the PNG ({err})") from None
    return rgb_to_id(rgb)


def evaluate_panoptic(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    unknown_categories: Sequence[str] = (),
) -> PanopticResult:
    """PQ of a COCO panoptic prediction (JSON + PNG folder) against its ground truth.

    Args:
        gt_json: ground-truth panoptic JSON (``annotations``, ``categories``).
        gt_dir: folder of ground-truth PNGs.
        pred_json: predicted panoptic JSON (``annotations`` with ``image_id``, ``file_name``,
            ``segments_info``).
        pred_dir: folder of predicted PNGs.
        unknown_categories: names of the categories evaluated as the unknown class (EOPSN).
    """
    gt_data, pred_data = _load_json(Path(gt_json)), _load_json(Path(pred_json))
    for path, data in ((gt_json, gt_data), (pred_json, pred_data)):
        if "annotations" not in data:
            raise UserError(f"{path}: no 'annotations' list")
    if "categories" not in gt_data:
        raise UserError(f"{gt_json}: no 'categories' list")
    by_name = {c["name"]: int(c["id"]) for c in gt_data["categories"]}
    unknown_names = [name for name in unknown_categories if name not in by_name]
    if unknown_names:
        raise UserError(f"{gt_json}: no categories named {', '.join(unknown_names)}")
    metric = PanopticQuality(gt_data["categories"], frozenset(by_name[n] for n in unknown_categories))
    predictions = {ann["image_id"]: ann for ann in pred_data["annotations"]}
    for gt_ann in gt_data["annotations"]:
        pred_ann = predictions.get(gt_ann["image_id"])
        if pred_ann is None:
            raise UserError(f"{pred_json}: no prediction for image id {gt_ann['image_id']}")
        metric.update(
            _read_ids(Path(gt_dir) / gt_ann["file_name"]),
            gt_ann["segments_info"],
            _read_ids(Path(pred_dir) / pred_ann["file_name"]),
            pred_ann["segments_info"],
            source=str(Path(pred_dir) / pred_ann["file_name"]),
        )
    return metric.compute()
