"""Maskomaly's anomaly queries of a model, chosen in the loop on a set with anomaly labels.

The labels are brought to the network's input (nearest neighbour to the network size, void in the
padding) so that they meet the query masks where the masks are scored
(:class:`~mask2anomaly.methods.QueryOverlap`, the authors' criterion).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mask2anomaly.data.base import VOID
from mask2anomaly.errors import UserError
from mask2anomaly.inference.loop import Consumer, RunSetup
from mask2anomaly.inference.outputs import ImageOutputs
from mask2anomaly.methods import QueryOverlap, QuerySelection


class QuerySelector(Consumer):
    """Every query's mean IoU with the anomalies; :meth:`result` picks the best ``top_k``."""

    def __init__(self, top_k: int = 4) -> None:
        self.top_k = top_k
        self.overlap = QueryOverlap()

    def start(self, setup: RunSetup) -> None:
        super().start(setup)
        if not setup.predictor.is_mask_model:
            raise UserError("query selection needs a mask transformer; this model predicts per pixel")

    def update(self, outputs: ImageOutputs) -> None:
        sample, frame = outputs.sample, outputs.frame
        if sample is None or sample.anomaly is None:
            raise UserError(f"{outputs.item.name}: query selection needs anomaly labels, and this image has none")
        labels = torch.from_numpy(sample.anomaly).long()
        if frame.network_size != frame.image_size:
            labels = F.interpolate(labels[None, None].float(), size=frame.network_size, mode="nearest")[0, 0].long()
        height, width = frame.ctx.size
        labels = F.pad(labels, (0, width - labels.shape[1], 0, height - labels.shape[0]), value=VOID)
        self.overlap.update(frame.ctx, labels[None])

    def merge(self, other: Consumer) -> None:
        assert isinstance(other, QuerySelector)
        self.overlap.merge(other.overlap)

    def result(self) -> QuerySelection:
        return self.overlap.select(self.top_k)
