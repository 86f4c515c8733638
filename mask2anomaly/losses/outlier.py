"""Outlier losses of the second training stage: mask contrastive (Mask2Anomaly), BCE, RbA.

Mask2Anomaly (paper 000 Sec. 4.3, Eq. 10-11; official ``mask2former/modeling/criterion.py``,
``SetCriterion.loss_ood``): the negative likelihood ``l_N = -max_c sum_q softmax(C)[q, c] sigmoid(M)[q]``
("no object" dropped) is computed at stride 4 and upsampled bilinearly (``align_corners=True``, as
the official code) to the outlier mask's size; then

* ``as_published`` -- Eq. 11 and the code: ``0.5 * (mean_in(l_N^2) + mean_out(max(0, m - l_N)^2))``.
  Since ``l_N <= 0`` (usually in ``[-1, 0]``), the inlier term pulls the inlier likelihood *down*
  towards 0, against the paper's text ("for in-distribution pixels l_N should be -1"), and
  ``m - l_N >= m > 0`` so the hinge never clips: the outlier term is ``(m + likelihood)^2`` everywhere.
  Minimising it drives the likelihood of every pixel to 0 (tests/losses/test_outlier.py shows it).
* ``corrected`` -- Eq. 11 applied to the anomaly score ``f = 1 + l_N`` of Eq. 5 instead of ``l_N``:
  ``0.5 * (mean_in(f^2) + mean_out(max(0, m - f)^2))``. The inlier likelihood is pulled up to 1, and
  an outlier pixel stops contributing once its anomaly score reaches the margin (likelihood
  ``<= 1 - m``), which is the paper's "margin = minimum distance between the in- and
  out-of-distribution scores" (inliers at ``f = 0``, outliers at ``f >= m``).

In both, the outlier term is added only when the batch has outlier pixels, and pixels the caller
does not mark as ignored are inliers -- the official code counts void (255) as inlier.

BCE (paper 000 Eq. 26, supplementary "Outlier Loss"): printed as
``M log(l_N) + (1 - M) log(1 - l_N)``, which takes the log of ``l_N <= 0``; the official ``bce``
branch uses ``l_N`` as a logit: ``0.5 * (BCE(l_N, 0) over inliers + BCE(l_N, 1) over outliers)``. We
implement the code.

RbA (Nayal et al., ICCV 2023; ``NazirNayal8/RbA`` ``criterion.py`` ``outlier_loss`` with
``OUTLIER_LOSS_TARGET: nls``, ``SCORE_NORM: tanh``, ``OUTLIER_LOSS_FUNC: squared_hinge``, thresholds
inlier 0.0 / outlier 5.0): score ``r = -sum_c tanh(f_c)`` with the same ``f`` (stride 4, then
upsampled with ``align_corners=True``); loss ``0.5 * mean_out(relu(5 - r)^2)`` over outlier pixels.
RbA's inlier term ``relu(r - 0)^2`` is identically zero because ``f >= 0`` makes ``r <= 0``, so it is
omitted; without outlier pixels the loss is 0.

Every loss is applied to the final and to every intermediate prediction with the same weight, as in
the official code (``loss_ood``, ``loss_ood_0`` ...); :func:`outlier_loss` does that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mask2anomaly.errors import UserError
from mask2anomaly.losses.config import CONTRASTIVE_VARIANTS, OutlierLossConfig
from mask2anomaly.losses.densehybrid import POSTERIOR_FACTOR, likelihood_term, posterior_term, resize_logits
from mask2anomaly.losses.output import LossOutput
from mask2anomaly.models.output import MaskTransformerOutput


def _class_mask_marginal(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    dtype = torch.promote_types(torch.promote_types(class_logits.dtype, mask_logits.dtype), torch.float32)
    probs = class_logits.to(dtype).softmax(-1)[..., :-1]
    return torch.einsum("bqk,bqhw->bkhw", probs, mask_logits.to(dtype).sigmoid())


def _resize(score: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None or tuple(score.shape[-2:]) == tuple(size):
        return score
    return F.interpolate(score.unsqueeze(1), size=size, mode="bilinear", align_corners=True).squeeze(1)


def negative_likelihood(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Mask2Anomaly's ``l_N = -max_c sum_q softmax(C)[q, c] sigmoid(M)[q]`` (paper 000 Eq. 10).

    Args:
        class_logits: ``[B, Q, K + 1]``; the last class ("no object") is dropped after the softmax.
        mask_logits: ``[B, Q, h, w]``.
        size: ``(H, W)`` to upsample the stride-4 score to (bilinear, ``align_corners=True``, as the
            official loss); ``None`` keeps ``h x w``.

    Returns:
        ``[B, H, W]``, at least float32 (half-precision logits are promoted), usually in ``[-1, 0]``
        (several queries voting for one class can push it below -1); ``1 + l_N`` is the anomaly
        score of Eq. 5.
    """
    return _resize(-_class_mask_marginal(class_logits, mask_logits).amax(1), size)


def rba_score(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """RbA's training score ``-sum_c tanh(sum_q softmax(C)[q, c] sigmoid(M)[q])``.

    Args:
        class_logits: ``[B, Q, K + 1]``; "no object" dropped after the softmax.
        mask_logits: ``[B, Q, h, w]``.
        size: ``(H, W)`` to upsample to (bilinear, ``align_corners=True``); ``None`` keeps ``h x w``.

    Returns:
        ``[B, H, W]``, at least float32, ``<= 0``; higher means more anomalous.
    """
    return _resize(-_class_mask_marginal(class_logits, mask_logits).tanh().sum(1), size)


def _split(
    score: torch.Tensor, outlier_mask: torch.Tensor, ignore: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if score.shape != outlier_mask.shape or (ignore is not None and ignore.shape != score.shape):
        raise ValueError(
            f"score {tuple(score.shape)}, outlier_mask {tuple(outlier_mask.shape)} and ignore "
            f"{None if ignore is None else tuple(ignore.shape)} must have the same shape [B, H, W]"
        )
    outlier = outlier_mask.to(device=score.device, dtype=torch.bool)
    inlier = ~outlier
    if ignore is not None:
        keep = ~ignore.to(device=score.device, dtype=torch.bool)
        outlier, inlier = outlier & keep, inlier & keep
    return score[inlier], score[outlier]


def _mean_or_zero(values: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    return values.mean() if values.numel() else anchor.sum() * 0.0


def mask_contrastive_loss(
    score: torch.Tensor,
    outlier_mask: torch.Tensor,
    ignore: torch.Tensor | None = None,
    margin: float = 0.75,
    variant: str = "as_published",
) -> torch.Tensor:
    """Mask2Anomaly's mask contrastive loss (paper 000 Eq. 11) on a negative-likelihood map.

    Args:
        score: ``[B, H, W]`` ``l_N`` from :func:`negative_likelihood`.
        outlier_mask: ``[B, H, W]`` bool, true on pasted outlier pixels.
        ignore: ``[B, H, W]`` bool, pixels in neither term; ``None`` (the official behaviour) makes
            every non-outlier pixel, void included, an inlier.
        margin: ``m``.
        variant: **as_published** ``0.5 * (mean_in(l^2) + mean_out(max(0, m - l)^2))`` with ``l = l_N``;
            **corrected** the same with ``l = 1 + l_N`` (see the module docstring).

    Returns:
        Scalar; the outlier term only when outlier pixels exist, an empty inlier set adds 0.
    """
    if variant not in CONTRASTIVE_VARIANTS:
        raise UserError(f"contrastive variant must be one of {CONTRASTIVE_VARIANTS}; got {variant!r}")
    inlier, outlier = _split(score, outlier_mask, ignore)
    if variant == "corrected":
        inlier, outlier = 1 + inlier, 1 + outlier
    loss = _mean_or_zero(inlier.pow(2), score)
    if outlier.numel():
        loss = loss + (margin - outlier).clamp(min=0).pow(2).mean()
    return 0.5 * loss


def bce_outlier_loss(
    score: torch.Tensor, outlier_mask: torch.Tensor, ignore: torch.Tensor | None = None
) -> torch.Tensor:
    """The BCE outlier loss of the official code (paper 000 Eq. 26 as implemented).

    Args:
        score: ``[B, H, W]`` ``l_N`` from :func:`negative_likelihood`, used as a logit.
        outlier_mask: ``[B, H, W]`` bool outlier pixels.
        ignore: ``[B, H, W]`` bool pixels in neither term; ``None`` makes void an inlier.

    Returns:
        Scalar ``0.5 * (mean_in(log(1 + e^l)) + mean_out(log(1 + e^-l)))``, the outlier term only when
        outlier pixels exist.
    """
    inlier, outlier = _split(score, outlier_mask, ignore)
    loss = _mean_or_zero(F.softplus(inlier), score)
    if outlier.numel():
        loss = loss + F.softplus(-outlier).mean()
    return 0.5 * loss


def rba_outlier_loss(
    score: torch.Tensor, outlier_mask: torch.Tensor, ignore: torch.Tensor | None = None, margin: float = 5.0
) -> torch.Tensor:
    """RbA's outlier loss: squared hinge pushing the RbA score of outlier pixels above ``margin``.

    Args:
        score: ``[B, H, W]`` from :func:`rba_score`.
        outlier_mask: ``[B, H, W]`` bool outlier pixels.
        ignore: ``[B, H, W]`` bool pixels to leave out.
        margin: RbA's outlier lower threshold.

    Returns:
        Scalar ``0.5 * mean_out(relu(margin - r)^2)``; 0 (attached to the graph) without outlier pixels.
    """
    _, outlier = _split(score, outlier_mask, ignore)
    if not outlier.numel():
        return score.sum() * 0.0
    return 0.5 * (margin - outlier).clamp(min=0).pow(2).mean()


def outlier_loss(
    output: MaskTransformerOutput,
    outlier_mask: torch.Tensor,
    config: OutlierLossConfig,
    ignore: torch.Tensor | None = None,
) -> LossOutput:
    """The configured outlier loss of the final and of every intermediate prediction.

    Args:
        output: model output; each prediction's score is computed at stride 4 and upsampled to the
            outlier mask's size.
        outlier_mask: ``[B, H, W]`` bool outlier pixels at the label resolution.
        config: kind, margin, variant and weight.
        ignore: ``[B, H, W]`` bool pixels to leave out; ``None`` as the official code.

    Returns:
        Terms ``loss_outlier`` (final) and ``loss_outlier_{i}`` (``output.aux[i]``), each times
        ``config.resolved_weight``.
    """
    size = tuple(outlier_mask.shape[-2:])
    if config.kind == "densehybrid":
        return _densehybrid_loss(output, outlier_mask, config, ignore)
    predictions = [("", output.class_logits, output.mask_logits)]
    predictions += [(f"_{i}", aux.class_logits, aux.mask_logits) for i, aux in enumerate(output.aux)]
    terms: dict[str, torch.Tensor] = {}
    for suffix, class_logits, mask_logits in predictions:
        if config.kind == "rba":
            value = rba_outlier_loss(
                rba_score(class_logits, mask_logits, size), outlier_mask, ignore, config.resolved_margin
            )
        elif config.kind == "bce":
            value = bce_outlier_loss(negative_likelihood(class_logits, mask_logits, size), outlier_mask, ignore)
        else:
            value = mask_contrastive_loss(
                negative_likelihood(class_logits, mask_logits, size),
                outlier_mask,
                ignore,
                config.resolved_margin,
                config.variant,
            )
        terms["loss_outlier" + suffix] = config.resolved_weight * value
    return LossOutput(total=torch.stack(list(terms.values())).sum(), terms=terms)


def _densehybrid_loss(
    output: MaskTransformerOutput, negatives: torch.Tensor, config: OutlierLossConfig, ignore: torch.Tensor | None
) -> LossOutput:
    """DenseHybrid's terms on a mask transformer's final prediction (the dataset-posterior head
    only exists there): ``log sum_c f_c`` of the marginal at stride 4, upsampled like the other
    outlier losses' scores, and the head's logits upsampled to the label size."""
    if output.dataset_logits is None:
        raise UserError("loss.outlier kind 'densehybrid' needs the dataset-posterior head: set model.dataset_head=true")
    size = tuple(negatives.shape[-2:])
    mass = _class_mask_marginal(output.class_logits, output.mask_logits).sum(1)
    log_likelihood = _resize(mass.clamp_min(torch.finfo(mass.dtype).tiny).log(), size)
    beta = config.resolved_weight
    terms = {
        "loss_likelihood": beta * likelihood_term(log_likelihood, negatives, ignore),
        "loss_posterior": beta
        * POSTERIOR_FACTOR
        * posterior_term(resize_logits(output.dataset_logits, size), negatives, ignore),
    }
    return LossOutput(total=terms["loss_likelihood"] + terms["loss_posterior"], terms=terms)
