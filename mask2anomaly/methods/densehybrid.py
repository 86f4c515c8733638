"""DenseHybrid's hybrid anomaly score: dataset posterior over unnormalised data likelihood.

Reference: Grcić and Šegvić, "DenseHybrid: Hybrid Open-set Segmentation with Synthetic Negative
Data" (paper 001, Fig. 3); authors' code ``matejgrcic/DenseHybrid``, ``evaluate_ood.py`` /
``evaluations/evaluations.py`` (``compute_ood_probs``) and ``smiyc_submission.py``.

With ``u`` the two logits of the dataset-posterior head and ``log p̂(x)`` the log of the
unnormalised density of the known classes (:attr:`ScoreContext.log_known_likelihood`):

- ``s_D(x) = log P(d_out | x) = log_softmax(u)[outlier]``, the discriminative part;
- ``s_G(x) = -log p̂(x)``: ``-logsumexp(z)`` of a per-pixel model's logits ``z`` (the authors' form);
  for a mask transformer ``-log sum_c f_c`` over its semantic marginal f (its class scores are
  probabilities mixed by masks, not logits; reading ``f_c = exp(z_c)`` makes p̂ the known-class mass
  that the masks put on the pixel, low where no known mask claims it);
- ``s_H(x) = s_D(x) + s_G(x)``, higher = more anomalous.

Both maps are formed on logits upsampled to the image first, as the authors' models do. The
authors take ``softmax`` and then ``log`` (which underflows to ``-inf`` where P(d_out | x) is below
float32's range); ``log_softmax`` gives the same values without that. ``+posterior`` and
``+likelihood`` score one part alone, for the ablation; on a per-pixel model ``+likelihood`` equals
``energy``. The dataset-posterior head comes from DenseHybrid training (``mask2anomaly train`` with a
``densehybrid`` recipe); a model without it can only use ``+likelihood``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from mask2anomaly.errors import UserError
from mask2anomaly.methods.base import AnomalyMethod, ScoreContext

PARTS = ("hybrid", "posterior", "likelihood")


@dataclass(frozen=True)
class DenseHybrid(AnomalyMethod):
    """``s_H = s_D + s_G`` (or one part, ``part``).

    Args:
        part: ``"hybrid"`` (default), ``"posterior"`` (s_D) or ``"likelihood"`` (s_G).
    """

    key = "densehybrid"
    needs_masks = False
    flags: ClassVar[dict[str, dict[str, Any]]] = {
        "posterior": {"part": "posterior"},
        "likelihood": {"part": "likelihood"},
    }
    part: Literal["hybrid", "posterior", "likelihood"] = "hybrid"

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise UserError(f"densehybrid part must be one of {', '.join(PARTS)}, got {self.part!r}")

    def check_model(self, config: Any) -> None:
        """The posterior part needs the dataset-posterior head, which only DenseHybrid training adds."""
        if self.part != "likelihood" and not getattr(config, "dataset_head", False):
            raise UserError(
                f"method {self.name!r} needs DenseHybrid's dataset-posterior head, which this model lacks; "
                "fine-tune one with `mask2anomaly train --recipe synthetic_cpu_densehybrid --set train.init=MODEL` "
                "(or espnetv2_densehybrid for ESPNetv2), or use densehybrid+likelihood"
            )

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        if self.part == "likelihood":
            return -ctx.log_known_likelihood
        if ctx.dataset_logits is None:
            raise UserError(f"method {self.name!r} needs DenseHybrid's dataset-posterior head, which this model lacks")
        if self.part == "posterior":
            return ctx.log_outlier_posterior
        return ctx.log_outlier_posterior - ctx.log_known_likelihood
