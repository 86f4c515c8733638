"""Inference: a model (:mod:`~mask2anomaly.inference.predictor`), the one loop over images
(:mod:`~mask2anomaly.inference.loop`) and its consumers (:mod:`~mask2anomaly.inference.consumers`),
and the jobs built from them: :func:`evaluate`, :func:`predict` and :func:`select_queries`.
"""

from mask2anomaly.inference.evaluate import EvaluateConfig, OpenSetOptions, evaluate
from mask2anomaly.inference.loop import Consumer, LoopResult, RunSetup, run
from mask2anomaly.inference.outputs import ImageOutputs
from mask2anomaly.inference.predict import PredictConfig, predict
from mask2anomaly.inference.predictor import InputSize, Predictor, open_model
from mask2anomaly.inference.queries import select_queries
from mask2anomaly.inference.sources import DatasetSource, FileSource, InputItem

__all__ = [
    "Consumer",
    "DatasetSource",
    "EvaluateConfig",
    "FileSource",
    "ImageOutputs",
    "InputItem",
    "InputSize",
    "LoopResult",
    "OpenSetOptions",
    "PredictConfig",
    "Predictor",
    "RunSetup",
    "evaluate",
    "open_model",
    "predict",
    "run",
    "select_queries",
]
