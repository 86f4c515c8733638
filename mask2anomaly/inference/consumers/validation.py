"""Closed-set and anomaly quality of a model on a labelled set: the validation inside training and
the ablation's scoring.

Closed-set mIoU over the known classes (unknown objects and other labels void), and the exact
pixel AuPRC / FPR95 / AUROC of every method of the run on the images with anomaly labels.
"""

from __future__ import annotations

import numpy as np

from mask2anomaly.data.base import UNKNOWN, VOID
from mask2anomaly.inference.loop import Consumer
from mask2anomaly.inference.outputs import ImageOutputs
from mask2anomaly.metrics import OpenSetConfusion, PixelMetrics


class Validation(Consumer):
    """mIoU, and each method's pixel metrics."""

    needs_closed_set = True

    def __init__(self) -> None:
        self.confusion: OpenSetConfusion | None = None
        self.pixels: dict[str, PixelMetrics] = {}

    def update(self, outputs: ImageOutputs) -> None:
        sample, name = outputs.sample, outputs.item.name
        if sample is None:
            return
        if sample.semantic is not None:
            k = self.setup.labels.num_classes
            gt = sample.semantic.astype(np.int64)
            gt[(gt >= k) | (sample.semantic == UNKNOWN)] = VOID
            if self.confusion is None:
                self.confusion = OpenSetConfusion(k, float("inf"))
            closed = outputs.closed_set
            self.confusion.update(closed, np.zeros(closed.shape, np.float32), gt, source=name)
        if sample.anomaly is not None:
            for method in self.setup.method_names:
                self.pixels.setdefault(method, PixelMetrics()).update(outputs.score(method), sample.anomaly, name)

    def merge(self, other: Consumer) -> None:
        assert isinstance(other, Validation)
        if other.confusion is not None:
            if self.confusion is None:
                self.confusion = other.confusion
            else:
                self.confusion.merge(other.confusion)
        for method, state in other.pixels.items():
            self.pixels.setdefault(method, PixelMetrics()).merge(state)

    def result(self) -> dict[str, float]:
        """``{"miou"}`` when the set has semantic labels, plus ``{"<method>/auprc", "<method>/fpr95",
        "<method>/auroc"}`` for every method when it has anomaly labels; fractions in [0, 1]."""
        out: dict[str, float] = {}
        if self.confusion is not None:
            out["miou"] = self.confusion.compute().miou
        for method, state in self.pixels.items():
            values = state.compute()
            out.update({f"{method}/{name}": getattr(values, name) for name in ("auprc", "fpr95", "auroc")})
        return out
