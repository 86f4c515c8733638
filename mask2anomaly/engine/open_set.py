"""Evaluation of open-set semantic (Open-IoU) and open-set panoptic (PQ with unknown) predictions.

Open-set semantic segmentation (paper 000 Sec. 5, Eq. 14; DenseHybrid's Open-IoU): the closed-set
argmax is overridden by the unknown class K where the method's anomaly score reaches a threshold —
given, calibrated at TPR > 95% on a calibration set, or, for two splits such as StreetHazards t5
and t6, each calibrated on the other (the two Open-mIoU weighted by image count). Ground truth: the
dataset's semantic map with unknown objects (254) as class K and void 255.

Open-set panoptic segmentation (Sec. 6): known segments by Mask2Former's merge and unknown instances
mined as configured (:class:`~mask2anomaly.methods.open_set_panoptic.OpenSetPanoptic`), scored with
panopticapi's PQ and EOPSN's unknown-class PQ against the dataset's panoptic ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mask2anomaly import data as datasets
from mask2anomaly.data.base import UNKNOWN, UNKNOWN_CATEGORY, VOID
from mask2anomaly.data.classes import THING_TRAIN_IDS
from mask2anomaly.engine.evaluate import dataset_keys
from mask2anomaly.engine.inference import Frame, Predictor, open_model
from mask2anomaly.engine.score_maps import json_safe
from mask2anomaly.errors import UserError
from mask2anomaly.io_utils import write_text_atomic
from mask2anomaly.methods import AnomalyMethod, parse_method, score_methods
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic, PanopticPrediction
from mask2anomaly.metrics import (
    OpenSetConfusion,
    PanopticQuality,
    PixelMetrics,
    calibrate_threshold,
    cross_calibrated_open_iou,
)
from mask2anomaly.metrics.open_iou import anomaly_labels

Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


def open_set_truth(semantic: np.ndarray, num_known: int) -> np.ndarray:
    """Open-set ground truth: known classes kept, unknown objects as class ``num_known``, the rest void."""
    gt = semantic.astype(np.int64)
    gt[(gt >= num_known) & (gt != VOID)] = VOID
    gt[semantic == UNKNOWN] = num_known
    return gt


def predict_split(
    predictor: Predictor, spec: str, method: AnomalyMethod, short_side: int | None, max_images: int, cache: Path
) -> list[Path]:
    """Score every image of ``spec`` once; cache ``(closed prediction, score, ground truth)`` per image."""
    reader = datasets.open_spec(spec)
    count = len(reader) if max_images <= 0 else min(max_images, len(reader))
    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for index in tqdm(range(count), desc=spec.partition(":")[0], unit="img"):
        sample = reader[index]
        if sample.semantic is None:
            raise UserError(f"{spec}: open-set semantic evaluation needs semantic labels")
        frame = predictor.context(sample.image, method.needs_flip, short_side)
        scores = score_methods(frame.ctx, [method], closed_set=True)[method.name]
        score = frame.to_original(scores.float())[0].cpu().numpy().astype(np.float32)
        closed = frame.to_original(frame.ctx.class_argmax, nearest=True)[0].cpu().numpy().astype(np.uint8)
        path = cache / f"{index:06d}.npz"
        np.savez(
            path,
            closed=closed,
            score=score,
            gt=open_set_truth(sample.semantic, predictor.num_classes).astype(np.uint8),
        )
        files.append(path)
    return files


def _iterate(files: list[Path]) -> Iterator[Triple]:
    for path in files:
        with np.load(path) as stored:
            yield stored["closed"], stored["score"], stored["gt"]


def calibrated_threshold(files: list[Path], num_known: int, tpr: float = 0.95) -> float:
    """Threshold whose TPR on the cached split is strictly above ``tpr``."""
    pixels = PixelMetrics()
    for _, score, gt in _iterate(files):
        pixels.update(score, anomaly_labels(gt, num_known))
    return calibrate_threshold(pixels, tpr)


def open_iou(files: list[Path], num_known: int, threshold: float) -> dict[str, float]:
    """mIoU and Open-mIoU of a cached split at ``threshold``."""
    confusion = OpenSetConfusion(num_known, threshold)
    for closed, score, gt in _iterate(files):
        confusion.update(closed, score, gt)
    result = confusion.compute()
    return {"miou": result.miou, "open_miou": result.open_miou, "threshold": threshold, "num_images": result.num_images}


def cross_calibrated(first: tuple[str, list[Path]], second: tuple[str, list[Path]], num_known: int) -> dict:
    """Each split thresholded at the other's TPR-95 threshold (StreetHazards t5 / t6)."""
    result = cross_calibrated_open_iou(
        (first[0], lambda: _iterate(first[1])), (second[0], lambda: _iterate(second[1])), num_known
    )
    splits = {
        name: {"miou": r.miou, "open_miou": r.open_miou, "threshold": r.threshold, "num_images": r.num_images}
        for name, r in result.splits.items()
    }
    return {"splits": splits, "miou": result.miou, "open_miou": result.open_miou}


def panoptic_metric(num_known: int) -> PanopticQuality:
    """PQ state over the known classes ``0 .. num_known - 1`` (Cityscapes things) and the unknown class."""
    categories = [{"id": c, "isthing": int(c in THING_TRAIN_IDS)} for c in range(num_known)]
    categories.append({"id": UNKNOWN_CATEGORY, "isthing": 1})
    return PanopticQuality(categories, frozenset({UNKNOWN_CATEGORY}))


def add_panoptic(quality: PanopticQuality, sample: datasets.Sample, frame: Frame, result: PanopticPrediction) -> None:
    """Score one image's panoptic prediction (at the network size) against the sample's ground truth."""
    if sample.instances is None or sample.segments is None:
        raise UserError(f"{sample.name}: open-set panoptic evaluation needs panoptic labels")
    ids = frame.to_original(result.ids[None], nearest=True)[0].cpu().numpy()
    gt_segments = [
        {"id": s.id, "category_id": s.category, "iscrowd": int(s.iscrowd), "area": s.area} for s in sample.segments
    ]
    quality.update(sample.instances, gt_segments, ids, result.segments, source=sample.name)


def panoptic_summary(quality: PanopticQuality) -> dict[str, dict[str, float]]:
    """``{"all" | "things" | "stuff" | "unknown": {"pq", "sq", "rq", ...}}``."""
    values = quality.compute()
    out = {name: vars(getattr(values, name)) for name in ("all", "things", "stuff")}
    if values.unknown is not None:
        out["unknown"] = vars(values.unknown)
    return out


def panoptic_quality(
    predictor: Predictor, spec: str, panoptic: OpenSetPanoptic, method: AnomalyMethod | None, max_images: int
) -> dict[str, dict[str, float]]:
    """PQ / SQ / RQ (all, things, stuff, unknown) of open-set panoptic predictions on ``spec``."""
    reader = datasets.open_spec(spec)
    quality = panoptic_metric(predictor.num_classes)
    count = len(reader) if max_images <= 0 else min(max_images, len(reader))
    for index in tqdm(range(count), desc="panoptic", unit="img"):
        sample = reader[index]
        frame = predictor.context(sample.image, method is not None and method.needs_flip)
        scores = method(frame.ctx) if method is not None else None
        add_panoptic(quality, sample, frame, panoptic(frame.ctx, scores)[0])
    return panoptic_summary(quality)


def evaluate_open_set_semantic(
    model: str,
    specs: list[str],
    method_name: str,
    out: str | Path,
    threshold: float | None = None,
    calibration: str | None = None,
    cross_calibrate: bool = False,
    short_side: int | None = None,
    max_images: int = 0,
    device: str = "cpu",
) -> dict:
    """Open-IoU of ``method_name`` on each dataset; writes ``OUT/open_set_semantic.json``.

    Exactly one of ``threshold``, ``calibration`` (a dataset spec) and ``cross_calibrate`` (two
    datasets, each calibrated on the other) sets the threshold.
    """
    if sum(x is not None and x is not False for x in (threshold, calibration, cross_calibrate)) != 1:
        raise UserError(
            "open-set semantic evaluation needs exactly one of --threshold, --calibration, --cross-calibrate"
        )
    if cross_calibrate and len(specs) != 2:
        raise UserError("--cross-calibrate needs exactly two datasets (e.g. StreetHazards t5 and t6)")
    out = Path(out)
    method = parse_method(method_name)
    predictor = open_model(model, device)
    predictor.check_methods([method])
    cached = {
        key: predict_split(predictor, spec, method, short_side, max_images, out / "open_set" / key)
        for key, spec in zip(dataset_keys(specs), specs, strict=True)
    }
    k = predictor.num_classes
    if cross_calibrate:
        (a, files_a), (b, files_b) = cached.items()
        result = {"method": method.name, "cross_calibrated": cross_calibrated((a, files_a), (b, files_b), k)}
    else:
        if calibration is not None:
            files = predict_split(
                predictor, calibration, method, short_side, max_images, out / "open_set" / "calibration"
            )
            threshold = calibrated_threshold(files, k)
        assert threshold is not None
        result = {"method": method.name, "threshold": threshold}
        result.update({key: open_iou(files, k, threshold) for key, files in cached.items()})
    write_text_atomic(out / "open_set_semantic.json", json.dumps(json_safe(result), indent=2) + "\n")
    return result


def evaluate_open_panoptic(
    model: str,
    specs: list[str],
    out: str | Path,
    mining: str = "paper",
    method_name: str | None = None,
    threshold: float | None = None,
    max_images: int = 0,
    device: str = "cpu",
) -> dict:
    """PQ with the unknown class on each dataset; writes ``OUT/open_panoptic.json``."""
    out = Path(out)
    predictor = open_model(model, device)
    if not predictor.is_mask_model:
        raise UserError("open-set panoptic evaluation needs a mask transformer")
    method = parse_method(method_name) if mining == "rba" else None
    if mining == "rba" and method_name is None:
        raise UserError("RbA mining needs a method whose score is thresholded (e.g. --methods rba)")
    panoptic = OpenSetPanoptic(mining=mining, score_threshold=threshold)
    result = {
        key: panoptic_quality(predictor, spec, panoptic, method, max_images)
        for key, spec in zip(dataset_keys(specs), specs, strict=True)
    }
    write_text_atomic(out / "open_panoptic.json", json.dumps(json_safe(result), indent=2) + "\n")
    return result
