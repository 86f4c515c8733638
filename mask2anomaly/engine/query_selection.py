"""Maskomaly's anomaly queries for a model, chosen on a validation set with anomaly labels.

The query indices Maskomaly accepts belong to one checkpoint; this runs the model over a labelled set
and applies :func:`~mask2anomaly.methods.select_anomaly_queries` (the authors' criterion), so that
``select-queries`` and the demo choose them the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from mask2anomaly import data as datasets
from mask2anomaly.data.base import VOID
from mask2anomaly.engine.inference import Predictor
from mask2anomaly.errors import UserError
from mask2anomaly.methods import QuerySelection, ScoreContext, select_anomaly_queries


def select_queries(predictor: Predictor, spec: str, max_images: int = 0, top_k: int = 4) -> QuerySelection:
    """The ``top_k`` queries of ``predictor``'s model whose masks cover the anomalies of ``spec`` best.

    Args:
        predictor: a mask transformer.
        spec: ``NAME:PATH`` of a dataset with anomaly labels.
        max_images: use the first N images (0: all).
        top_k: number of queries.
    """
    if not predictor.is_mask_model:
        raise UserError("query selection needs a mask transformer")
    reader = datasets.open_spec(spec)
    count = len(reader) if max_images <= 0 else min(max_images, len(reader))

    def batches() -> Iterator[tuple[ScoreContext, torch.Tensor]]:
        for index in range(count):
            sample = reader[index]
            if sample.anomaly is None:
                raise UserError(f"{spec}: the dataset has no anomaly labels")
            frame = predictor.context(sample.image, flip=False)
            labels = torch.from_numpy(sample.anomaly).long()
            if frame.network_size != frame.image_size:
                labels = F.interpolate(labels[None, None].float(), size=frame.network_size, mode="nearest")[0, 0]
                labels = labels.long()
            height, width = frame.ctx.size
            labels = F.pad(labels, (0, width - labels.shape[1], 0, height - labels.shape[0]), value=VOID)
            yield frame.ctx, labels[None]

    return select_anomaly_queries(batches(), top_k=top_k)
