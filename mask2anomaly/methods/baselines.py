"""Classic per-pixel uncertainty baselines: maximum softmax probability, entropy, max-logit, energy.

References:
    Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution Examples in
    Neural Networks", ICLR 2017 (MSP); Hendrycks et al., "Scaling Out-of-Distribution Detection for
    Real-World Settings", ICML 2022 (max-logit); Liu et al., "Energy-based Out-of-distribution
    Detection", NeurIPS 2020 (energy). Paper 000 (Mask2Anomaly) Tables I-III use them as baselines.

Every method reads the per-pixel class scores f ``[B, K, H, W]`` of a :class:`ScoreContext`: a
per-pixel model's logits, or a mask transformer's semantic marginal ``softmax(C)[:, :K]^T sigmoid(M)``.
The probability-based scores (MSP, entropy) use the class distribution p: the softmax of the logits,
or the marginal normalised over the K classes; the logit-based ones (max-logit, energy) use f as the
logits, as RbA does with the marginal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mask2anomaly.methods.base import AnomalyMethod, ScoreContext


@dataclass(frozen=True)
class MSP(AnomalyMethod):
    """Maximum softmax probability: ``1 - max_c p_c``. For a per-pixel model computed as
    ``1 - exp(max_c z_c - logsumexp(z))`` (the same value without the K probability maps), which
    shares the log-partition with DenseHybrid's likelihood."""

    key = "msp"
    needs_masks = False

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        if ctx.has_masks:
            return 1 - ctx.pixel_probs.amax(1)
        return 1 - torch.exp(ctx.class_max - ctx.log_known_likelihood)


@dataclass(frozen=True)
class Entropy(AnomalyMethod):
    """Entropy of the class distribution: ``-sum_c p_c log p_c`` (nats; ``0 log 0 = 0``)."""

    key = "entropy"
    needs_masks = False

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        p = ctx.pixel_probs
        return -torch.special.xlogy(p, p).sum(1)


@dataclass(frozen=True)
class MaxLogit(AnomalyMethod):
    """Negative maximum logit: ``-max_c f_c``."""

    key = "max_logit"
    needs_masks = False
    reads_class_scores = False

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        return -ctx.class_max


@dataclass(frozen=True)
class Energy(AnomalyMethod):
    """Free energy ``-T logsumexp_c (f_c / T)``.

    Args:
        temperature: T (1 in the energy paper's inference).
    """

    key = "energy"
    needs_masks = False
    temperature: float = 1.0

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        return -self.temperature * torch.logsumexp(ctx.class_scores / self.temperature, dim=1)
