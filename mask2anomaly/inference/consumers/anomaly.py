"""The anomaly-segmentation task: each method's score maps written beside the labels, then the
benchmark metrics of exactly those files.

During the loop every method's map goes to ``FOLDER/<method>/<stem>.npy`` (float32, the image's
size) and the labels to ``FOLDER/labels/<stem>.png`` (0 inlier, 1 anomaly, 255 void), written by the
loop's writer thread. At the end the metrics are computed by
:func:`~mask2anomaly.metrics.score_files.evaluate` on the files this run wrote (sorted by stem, as
``evaluate-maps`` pairs a folder) — so ``evaluate-maps`` on the folder gives the same numbers, and
files that other runs left in the folder never count. Reading the maps back keeps one method's
state in memory at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mask2anomaly.errors import UserError
from mask2anomaly.inference.loop import Consumer
from mask2anomaly.inference.outputs import ImageOutputs
from mask2anomaly.io_utils import save_npy_atomic, save_png_atomic
from mask2anomaly.metrics.pixel import PROTOCOLS
from mask2anomaly.metrics.score_files import Pair, evaluate, iterate_pairs

LABELS = "labels"


class AnomalyMetrics(Consumer):
    """Pixel, component and MDM metrics of every method (see the module docstring).

    Args:
        folder: where the maps and labels are written.
        protocol: pixel-metric protocol of ``"pixel"``.
        track: SMIYC component track.
        also: further pixel protocols computed from the same files (``"pixel_<protocol>"``).
    """

    def __init__(self, folder: Path, protocol: str = "exact", track: str = "anomaly", also: tuple[str, ...] = ()):
        if protocol not in PROTOCOLS:
            raise UserError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        self.folder = Path(folder)
        self.protocol = protocol
        self.track = track
        self.also = also
        self.stems: list[str] = []

    def update(self, outputs: ImageOutputs) -> None:
        sample, stem = outputs.sample, outputs.item.stem
        if sample is None or sample.anomaly is None:
            raise UserError(f"{outputs.item.name}: the anomaly task needs anomaly labels, and this image has none")
        self.setup.write(save_png_atomic, self.folder / LABELS / f"{stem}.png", sample.anomaly)
        for name in self.setup.method_names:
            self.setup.write(save_npy_atomic, self.folder / name / f"{stem}.npy", outputs.score(name))
        self.stems.append(stem)

    def merge(self, other: Consumer) -> None:
        assert isinstance(other, AnomalyMetrics)
        self.stems.extend(other.stems)

    def pairs(self, method: str) -> list[Pair]:
        """``(stem, map, labels)`` of every image this run wrote, sorted by stem."""
        return [(s, self.folder / method / f"{s}.npy", self.folder / LABELS / f"{s}.png") for s in sorted(self.stems)]

    def result(self, methods: list[str]) -> dict[str, dict]:
        """``{method: metrics}`` as ``evaluate-maps`` reports them (NaN where undefined)."""
        if not self.stems:
            raise UserError("no image was scored, so there are no anomaly metrics")
        return {m: evaluate(self.pairs(m), self.protocol, self.track, None, self.also) for m in methods}

    def curves(self, method: str, stride: int = 16, points: int = 200) -> dict[str, list[float]]:
        """PR and ROC curves for the report from every ``stride``-th valid pixel of ``method``'s maps
        (the table's numbers are exact; the curves are only drawn)."""
        scores, labels = [], []
        for score, label, _ in iterate_pairs(self.pairs(method)):
            valid = label.ravel() != 255
            scores.append(score.ravel()[valid][::stride].astype(np.float64))
            labels.append(label.ravel()[valid][::stride] == 1)
        s, y = np.concatenate(scores), np.concatenate(labels)
        if y.sum() == 0 or y.all():
            return {}
        order = np.argsort(-s, kind="stable")
        y = y[order]
        tp, fp = np.cumsum(y), np.cumsum(~y)
        pick = np.unique(np.linspace(0, len(y) - 1, points).astype(int))
        recall, precision = tp[pick] / tp[-1], tp[pick] / (tp[pick] + fp[pick])
        return {
            "recall": recall.round(5).tolist(),
            "precision": precision.round(5).tolist(),
            "fpr": (fp[pick] / fp[-1]).round(5).tolist(),
            "tpr": recall.round(5).tolist(),
        }
