"""``mask2anomaly select-queries``: Maskomaly's anomaly queries of a model, chosen by one pass of the
loop over a set with anomaly labels (the authors' criterion, see
:class:`~mask2anomaly.methods.QueryOverlap`)."""

from __future__ import annotations

from mask2anomaly.inference.consumers.queries import QuerySelector
from mask2anomaly.inference.loop import run
from mask2anomaly.inference.predictor import Predictor
from mask2anomaly.inference.sources import DatasetSource
from mask2anomaly.methods import QuerySelection


def select_queries(
    predictor: Predictor, dataset: str, *, max_images: int = 0, top_k: int = 4, strict: bool = False
) -> QuerySelection:
    """The ``top_k`` queries of ``predictor``'s model whose masks cover the anomalies of ``dataset``
    (``NAME:PATH``) best."""
    selector = QuerySelector(top_k)
    run(DatasetSource(dataset, max_images), predictor, [], [selector], strict=strict, progress="select queries")
    return selector.result()
