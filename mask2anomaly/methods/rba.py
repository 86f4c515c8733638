"""RbA: "Rejected by All" anomaly score of a mask transformer.

Reference:
    Nayal, Yavuz, Henriques, Guney, "RbA: Segmenting Unknown Regions Rejected by All", ICCV 2023;
    code ``NazirNayal8/RbA``.

With the per-class marginal ``f_c = sum_q softmax(C)[q, c] sigmoid(M)[q]`` ("no object" dropped), the
score is ``-sum_c tanh(f_c)``: a pixel every class rejects (all ``f_c`` near 0) scores near 0, a pixel
claimed by one or more classes scores down to ``-K``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mask2anomaly.methods.base import AnomalyMethod, ScoreContext


@dataclass(frozen=True)
class RbA(AnomalyMethod):
    """``-sum_c tanh(f_c)`` over the K known classes of the semantic marginal."""

    key = "rba"
    needs_masks = True

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        return -torch.tanh(ctx.class_scores).sum(1)
