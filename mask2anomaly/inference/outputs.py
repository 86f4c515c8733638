"""What one forward pass gives the consumers of the loop, computed on first use and shared.

Every method scores the forward pass once, at the network size (:func:`score_methods` shares the
pieces several methods read); a consumer asking for a score, the closed-set prediction or a panoptic
prediction at the image's size gets it computed once and cached, so writers and metrics of several
tasks never repeat work. A score that is not finite is an error naming the image and the method: a
NaN map never reaches a file or a metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mask2anomaly.errors import UserError
from mask2anomaly.inference.predictor import Frame
from mask2anomaly.inference.sources import InputItem
from mask2anomaly.methods import AnomalyMethod, score_methods
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic


@dataclass(frozen=True)
class Panoptic:
    """A panoptic prediction at the image's size.

    Attributes:
        ids: ``(H, W)`` int32 segment ids, 0 = none.
        segments: ``{"id", "category_id", "isthing", "area"}`` of every segment present (areas
            counted at the image's size; unknown instances have the panoptic config's
            ``unknown_category``).
    """

    ids: np.ndarray
    segments: list[dict[str, int]]


class ImageOutputs:
    """One image's forward pass, scored by every method of the run.

    Args:
        item: the image (and its labels).
        frame: the forward pass.
        methods: the run's methods.
        closed_set: whether some consumer will read the closed-set prediction (lets the methods'
            shared pass over the masks produce it too).
    """

    def __init__(self, item: InputItem, frame: Frame, methods: Sequence[AnomalyMethod], closed_set: bool) -> None:
        self.item = item
        self.frame = frame
        self.network_scores: dict[str, torch.Tensor] = score_methods(frame.ctx, methods, closed_set)
        self._scores: dict[str, np.ndarray] = {}
        self._closed: np.ndarray | None = None
        self._panoptic: dict[tuple[int, str | None], Panoptic] = {}

    @property
    def sample(self):
        """The dataset sample of the image (labels), or ``None`` for a plain image file."""
        return self.item.sample

    def score(self, method: str) -> np.ndarray:
        """``(H, W)`` float32 scores of ``method`` at the image's size."""
        if method not in self._scores:
            scores = self.frame.to_original(self.network_scores[method].float())[0].cpu().numpy()
            if not np.isfinite(scores).all():
                raise UserError(
                    f"{self.item.name}: method {method} gave non-finite scores (NaN or inf); "
                    "the model's outputs are not finite"
                )
            self._scores[method] = scores
        return self._scores[method]

    @property
    def closed_set(self) -> np.ndarray:
        """``(H, W)`` int64 closed-set class of every pixel (argmax of the class scores)."""
        if self._closed is None:
            argmax = self.frame.ctx.class_argmax
            self._closed = self.frame.to_original(argmax, nearest=True)[0].cpu().numpy()
        return self._closed

    def panoptic(self, config: OpenSetPanoptic, method: str | None = None) -> Panoptic:
        """The open-set panoptic prediction of ``config`` (RbA mining thresholds ``method``'s score)."""
        key = (id(config), method)
        if key not in self._panoptic:
            scores = self.network_scores[method] if method is not None else None
            result = config(self.frame.ctx, scores)[0]
            ids = self.frame.to_original(result.ids[None], nearest=True)[0].cpu().numpy().astype(np.int32)
            present, areas = np.unique(ids, return_counts=True)
            area = dict(zip(present.tolist(), areas.tolist(), strict=True))
            segments = [{**s, "area": int(area[s["id"]])} for s in result.segments if area.get(s["id"], 0)]
            self._panoptic[key] = Panoptic(ids, segments)
        return self._panoptic[key]
