"""Closed-set targets for a training set that has none: the initial network's own predictions.

DenseHybrid fine-tunes a closed-set model with its closed-set loss kept (paper 001, Fig. 4). On a set
without semantic labels (here: the Fishyscapes Static frames, Cityscapes validation scenes whose
Cityscapes labels are not available), the targets of that loss are the predictions of the network
the run starts from, so that the closed-set loss keeps the network where it was while the
dataset-posterior head and the likelihood term learn; the frames' anomaly pixels are void. Each
image is labelled once, at the network's own input size like inference, and kept in memory.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from mask2anomaly.data.base import VOID, Sample
from mask2anomaly.inference.predictor import Predictor


class PseudoLabeller:
    """``labels(index, sample)``: ``(H, W)`` uint8 closed-set labels of a sample without any.

    Args:
        model: the initial network (copied; the copy stays in eval mode on the CPU).
    """

    def __init__(self, model: nn.Module) -> None:
        self.predictor = Predictor(copy.deepcopy(model).cpu(), torch.device("cpu"))
        self.cache: dict[int, np.ndarray] = {}

    def labels(self, index: int, sample: Sample) -> np.ndarray:
        if index not in self.cache:
            frame = self.predictor.context(sample.image, flip=False)
            closed = frame.to_original(frame.ctx.class_argmax, nearest=True)[0].numpy().astype(np.uint8)
            if sample.anomaly is not None:
                closed[sample.anomaly == 1] = VOID
            self.cache[index] = closed
        return self.cache[index]
