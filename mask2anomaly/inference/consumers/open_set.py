"""Open-set semantic segmentation in the loop: threshold calibration and Open-IoU.

Ground truth: the dataset's semantic map with the unknown objects (254) as class K and every other
label outside the known classes void; the anomaly labels of a calibration set come from the
anomaly map when the dataset has one, else from that open-set ground truth (unknown = 1).

:class:`ThresholdCalibration` keeps each method's exact pixel state and gives the threshold of
:func:`~mask2anomaly.metrics.calibrate_threshold` (DenseHybrid's first ROC point above TPR 95%).
:class:`OpenIoU` counts each method's open-set confusion at a known threshold; with ``defer`` it
instead keeps every image's closed-set prediction, ground truth and scores in a cache folder, for
the StreetHazards protocol where a split's threshold comes from the other split.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mask2anomaly.data.base import UNKNOWN, VOID, Sample
from mask2anomaly.errors import UserError
from mask2anomaly.inference.loop import Consumer
from mask2anomaly.inference.outputs import ImageOutputs
from mask2anomaly.io_utils import atomic_path
from mask2anomaly.metrics import OpenSetConfusion, PixelMetrics, calibrate_threshold
from mask2anomaly.metrics.open_iou import anomaly_labels


def open_set_truth(semantic: np.ndarray, num_known: int) -> np.ndarray:
    """Open-set ground truth: known classes kept, unknown objects as class ``num_known``, the rest void."""
    gt = semantic.astype(np.int64)
    gt[(gt >= num_known) & (gt != VOID)] = VOID
    gt[semantic == UNKNOWN] = num_known
    return gt


def calibration_labels(sample: Sample | None, num_known: int, name: str) -> np.ndarray:
    """Anomaly labels (0 / 1 / 255) of a calibration image."""
    if sample is not None and sample.anomaly is not None:
        return sample.anomaly
    if sample is not None and sample.semantic is not None:
        return anomaly_labels(open_set_truth(sample.semantic, num_known), num_known)
    raise UserError(f"{name}: threshold calibration needs anomaly or semantic labels, and this image has none")


def semantic_truth(sample: Sample | None, num_known: int, name: str) -> np.ndarray:
    """The open-set ground truth of an evaluated image."""
    if sample is None or sample.semantic is None:
        raise UserError(f"{name}: open-set semantic evaluation needs semantic labels, and this image has none")
    return open_set_truth(sample.semantic, num_known)


class ThresholdCalibration(Consumer):
    """Each method's TPR-95 threshold on the images seen (exact pooled counts)."""

    def __init__(self, tpr: float = 0.95) -> None:
        self.tpr = tpr
        self.pixels: dict[str, PixelMetrics] = {}

    def update(self, outputs: ImageOutputs) -> None:
        labels = calibration_labels(outputs.sample, self.setup.labels.num_classes, outputs.item.name)
        for name in self.setup.method_names:
            self.pixels.setdefault(name, PixelMetrics()).update(outputs.score(name), labels, outputs.item.name)

    def merge(self, other: Consumer) -> None:
        assert isinstance(other, ThresholdCalibration)
        for name, state in other.pixels.items():
            self.pixels.setdefault(name, PixelMetrics()).merge(state)

    def result(self) -> dict[str, float]:
        """``{method: threshold}``."""
        return {name: calibrate_threshold(state, self.tpr) for name, state in self.pixels.items()}


class OpenIoU(Consumer):
    """mIoU and Open-mIoU of every method.

    Args:
        thresholds: per method, the score above which a pixel is unknown; ``None`` with ``defer``.
        defer: keep the per-image maps in ``cache`` instead, for thresholds known only later.
        cache: the folder of the deferred maps.
    """

    needs_closed_set = True

    def __init__(self, thresholds: dict[str, float] | None = None, defer: bool = False, cache: Path | None = None):
        if (thresholds is None) != defer or (defer and cache is None):
            raise UserError("open-set semantic evaluation needs thresholds, or a cache to defer them")
        self.thresholds = thresholds
        self.defer = defer
        self.cache = cache
        self.confusion: dict[str, OpenSetConfusion] = {}
        self.files: list[Path] = []

    def start(self, setup) -> None:
        super().start(setup)
        setup.require_model_classes("open-set semantic segmentation")
        if self.thresholds is not None:
            missing = [m for m in setup.method_names if m not in self.thresholds]
            if missing:
                raise UserError(f"open-set semantic evaluation has no threshold for {', '.join(missing)}")
            k = setup.labels.num_classes
            self.confusion = {m: OpenSetConfusion(k, self.thresholds[m]) for m in setup.method_names}

    def update(self, outputs: ImageOutputs) -> None:
        k = self.setup.labels.num_classes
        truth = semantic_truth(outputs.sample, k, outputs.item.name)
        closed = outputs.closed_set
        if not self.defer:
            for name, confusion in self.confusion.items():
                confusion.update(closed, outputs.score(name), truth, outputs.item.name)
            return
        assert self.cache is not None
        path = self.cache / f"{outputs.item.stem}.npz"
        scores = {f"score:{name}": outputs.score(name) for name in self.setup.method_names}
        self.setup.write(_save_npz, path, {"closed": closed.astype(np.uint8), "gt": truth.astype(np.uint8), **scores})
        self.files.append(path)

    def merge(self, other: Consumer) -> None:
        assert isinstance(other, OpenIoU)
        for name, state in other.confusion.items():
            self.confusion[name].merge(state)
        self.files.extend(other.files)

    def result(self) -> dict[str, dict[str, float]]:
        """``{method: {"threshold", "miou", "open_miou", "num_images"}}`` at the given thresholds."""
        out = {}
        for name, state in self.confusion.items():
            r = state.compute()
            out[name] = {"threshold": r.threshold, "miou": r.miou, "open_miou": r.open_miou, "num_images": r.num_images}
        return out

    def split(self, method: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(closed, scores, ground truth)`` of every cached image, for a deferred threshold."""
        for path in sorted(self.files):
            with np.load(path) as stored:
                yield stored["closed"], stored[f"score:{method}"], stored["gt"].astype(np.int64)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
