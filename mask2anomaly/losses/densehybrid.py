"""DenseHybrid's training terms on images with pasted negatives (paper 001, Fig. 4 and Eq.
``final_loss``; authors' code ``experiments/semseg_negatives_joint_th.py``, ``train``).

With ``log p̂(x)`` the log unnormalised density of the known classes (``logsumexp`` of a per-pixel
model's logits; ``log sum_c f_c`` of a mask transformer's marginal, see
:mod:`mask2anomaly.methods.densehybrid`) and ``u`` the dataset-posterior logits, both at label
resolution:

- ``L_x = mean over negative pixels of log p̂(x)``: pushes the density of negatives down. The
  authors add a detached regulariser (a constant, no gradient; their comment calls it useless),
  omitted here; like theirs, the term has no inlier part (the closed-set loss keeps inliers likely),
  and it is 0 when the batch has no negative pixel.
- ``L_d = cross-entropy of softmax(u) against 1[negative]``, mean over every pixel that is not
  ignored: the authors average over all pixels of the batch, void included (void counts as inlier);
  here only the padding added to batch images of different sizes is left out.

The total is ``L_cls + beta L_x + 10 beta L_d`` with ``beta = 0.03`` in all of the authors' scripts;
``L_cls`` is the model's closed-set loss with negative and void pixels ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POSTERIOR_FACTOR = 10.0
"""The posterior term's weight relative to the likelihood term's (the authors' ``10 * beta``)."""


def likelihood_term(log_likelihood: torch.Tensor, negatives: torch.Tensor, ignore: torch.Tensor | None) -> torch.Tensor:
    """``L_x``: mean of ``log_likelihood [B, H, W]`` over the negative pixels (bool ``[B, H, W]``)
    that are not ignored; 0 (attached to the graph) without any."""
    chosen = negatives if ignore is None else negatives & ~ignore
    if not bool(chosen.any()):
        return log_likelihood.sum() * 0.0
    return log_likelihood[chosen].mean()


def posterior_term(dataset_logits: torch.Tensor, negatives: torch.Tensor, ignore: torch.Tensor | None) -> torch.Tensor:
    """``L_d``: two-way cross-entropy of ``dataset_logits [B, 2, H, W]`` against ``negatives``, mean
    over the pixels not ignored."""
    per_pixel = F.cross_entropy(dataset_logits, negatives.long(), reduction="none")
    if ignore is None:
        return per_pixel.mean()
    kept = ~ignore
    return per_pixel[kept].mean() if bool(kept.any()) else per_pixel.sum() * 0.0


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, C, h, w]`` logits bilinearly resized to ``size`` (unchanged when already there)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
