"""Configuration of the outlier loss of the second training stage, kept free of torch so that
training configurations can be read and validated without it.

Defaults, each from its source: the mask contrastive margin 0.75 is the paper's (paper 000 Sec. 7.3,
"m as 0.75"; the official ``mask2former/config.py`` sets ``MARGIN: 1.0``, which the contrastive
recipes mention); RbA's outlier threshold 5.0 is the outlier target of RbA's squared-hinge loss in
its code (see :mod:`mask2anomaly.losses.outlier`); the BCE loss has no margin. The weight 1.0 is
the official ``OOD_WEIGHT``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mask2anomaly.errors import UserError

OUTLIER_LOSS_KINDS = ("contrastive", "bce", "rba", "densehybrid")
CONTRASTIVE_VARIANTS = ("as_published", "corrected")
DEFAULT_MARGINS = {"contrastive": 0.75, "rba": 5.0}
DEFAULT_WEIGHTS = {"densehybrid": 0.03}
"""Weight of a kind when none is given (1.0 otherwise): DenseHybrid's beta of all its scripts."""


@dataclass(frozen=True)
class OutlierLossConfig:
    """Which outlier loss the second stage trains with.

    Attributes:
        kind: **contrastive** (Mask2Anomaly's mask contrastive loss), **bce** (its BCE alternative,
            Eq. 26), **rba** (RbA's squared hinge on ``-sum tanh``) or **densehybrid** (DenseHybrid's
            likelihood and dataset-posterior terms; needs a model with the dataset-posterior head).
        margin: the contrastive margin ``m`` (default 0.75, the paper's best) or RbA's outlier
            threshold (default 5.0); ``None`` takes the kind's default; unused by **bce** and
            **densehybrid**.
        variant: for **contrastive**: **as_published** (Eq. 11 and the official code) or
            **corrected** (the paper's stated intent); must stay **as_published** for the others.
        weight: multiplies the loss of every prediction (final and intermediate); for
            **densehybrid** DenseHybrid's beta (default 0.03): the likelihood term times beta, the
            posterior term times 10 beta. ``None`` takes the kind's default (1.0 but densehybrid).
    """

    kind: str = "contrastive"
    margin: float | None = None
    variant: str = "as_published"
    weight: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in OUTLIER_LOSS_KINDS:
            raise UserError(f"outlier loss kind must be one of {OUTLIER_LOSS_KINDS}; got {self.kind!r}")
        if self.variant not in CONTRASTIVE_VARIANTS:
            raise UserError(f"outlier loss variant must be one of {CONTRASTIVE_VARIANTS}; got {self.variant!r}")
        if self.kind != "contrastive" and self.variant != "as_published":
            raise UserError(f"outlier loss variant {self.variant!r} applies to kind 'contrastive' only")
        if self.margin is not None and self.kind in ("bce", "densehybrid"):
            raise UserError(
                f"outlier loss kind {self.kind!r} has no margin; leave margin unset "
                f"(e.g. --set 'loss.outlier={{kind: {self.kind}}}')"
            )
        if self.margin is not None and self.margin <= 0:
            raise UserError(f"outlier loss margin must be > 0; got {self.margin}")
        if self.weight is not None and self.weight < 0:
            raise UserError(f"outlier loss weight must be >= 0; got {self.weight}")

    @property
    def resolved_weight(self) -> float:
        """The weight in use: the given one or the kind's default."""
        return self.weight if self.weight is not None else DEFAULT_WEIGHTS.get(self.kind, 1.0)

    @property
    def resolved_margin(self) -> float | None:
        """The margin in use: the given one or the kind's default (``None`` for **bce**)."""
        return self.margin if self.margin is not None else DEFAULT_MARGINS.get(self.kind)
