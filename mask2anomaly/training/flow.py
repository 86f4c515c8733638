"""DenseHybrid's synthetic negatives: a normalising flow over image patches, trained with the model.

Paper 001 (Fig. 4 and its Sec. "synthetic negatives") samples negatives from a jointly trained
normalising flow; its ancestor (Grcić et al., paper 002) trains a Real NVP "to generate datapoints
at the border of the training distribution". The authors' public code has no flow (only negatives
from ADE20k), so the objective below is our reading, written down in full:

- the flow is a multi-scale Glow (``normflows``: per level, ``blocks`` Glow blocks of actnorm,
  invertible 1x1 convolution and affine coupling, then a squeeze; half of the channels leave at each
  level as latent variables with learned diagonal Gaussians) over ``3 x P x P`` patches with pixel
  values in [0, 1];
- it maximises the likelihood of inlier patches (random ``P x P`` crops of the training crops that
  hold no pasted pixel), dequantised with uniform noise of one grey level: loss = negative
  log-likelihood in nats per dimension;
- and it moves its samples to the border of the inlier distribution: for each sample, pasted alone
  through the model (eval mode, the model's own weights not updated by this term), the closed-set
  prediction is pulled to the uniform distribution, ``KL(U || p(y | sample))`` averaged over the
  sample's pixels, times ``border_weight``;
- the segmentation model sees the samples pasted into its crops (rectangles placed as real
  negatives are, :mod:`mask2anomaly.data.negatives`) and trains on them with DenseHybrid's terms;
  that loss does not reach the flow (the samples are detached there).

Why ``normflows``: a maintained PyPI library of flows with multi-scale image architectures (Glow,
Real NVP) and exact log-likelihoods; sampling here draws the base variables from the run's own
generator (so a resumed run repeats its steps) and pushes them through the flow's forward map.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mask2anomaly.errors import UserError
from mask2anomaly.models.espnetv2 import ESPNetV2Segmentation
from mask2anomaly.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, SIZE_DIVISOR
from mask2anomaly.training.config import FlowConfig
from mask2anomaly.training.data import Batch

CHANNELS = 3
GREY_LEVELS = 256
FLOW_PREFIX = "flow."
"""Prefix of the flow's weights in a training checkpoint (model loading skips them)."""


def _normflows():
    try:
        import normflows
    except ImportError:
        raise UserError("flow negatives need the normflows package: pip install 'mask2anomaly[train]'") from None
    return normflows


class PatchFlow(nn.Module):
    """Multi-scale Glow over ``(3, patch, patch)`` patches in [0, 1].

    Args:
        config: levels, blocks per level and coupling width.
        patch: patch side, divisible by ``2 ** config.levels``.
    """

    def __init__(self, config: FlowConfig, patch: int) -> None:
        super().__init__()
        if patch % 2**config.levels:
            raise UserError(f"flow patch {patch} must be divisible by 2^levels = {2**config.levels}")
        nf = _normflows()
        levels = config.levels
        self.patch = patch
        bases, flows, merges = [], [], []
        for i in range(levels):
            width = CHANNELS * 2 ** (levels + 1 - i)
            blocks = [
                nf.flows.GlowBlock(width, config.hidden, split_mode="channel", use_lu=False)
                for _ in range(config.blocks)
            ]
            flows.append([*blocks, nf.flows.Squeeze()])
            if i > 0:
                merges.append(nf.flows.Merge())
                side = patch // 2 ** (levels - i)
                shape = (CHANNELS * 2 ** (levels - i), side, side)
            else:
                side = patch // 2**levels
                shape = (CHANNELS * 2 ** (levels + 1), side, side)
            bases.append(nf.distributions.DiagGaussian(shape))
        self.flow = nf.MultiscaleFlow(bases, flows, merges, class_cond=False)

    @property
    def dims(self) -> int:
        return CHANNELS * self.patch * self.patch

    def log_prob(self, patches: torch.Tensor) -> torch.Tensor:
        """``[N]`` log-density (nats) of ``[N, 3, P, P]`` values in [0, 1], centred on 0 first."""
        return self.flow.log_prob(patches - 0.5, None)

    def nll_per_dim(self, patches: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mean negative log-likelihood per dimension of uint8-valued patches in [0, 1], dequantised
        with uniform noise of one grey level drawn from ``generator``."""
        noise = torch.rand(patches.shape, generator=generator).to(patches) / GREY_LEVELS
        return -self.log_prob(patches + noise).mean() / self.dims

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``[count, 3, P, P]`` samples in [0, 1], base noise from ``generator``. Values the flow's
        forward map sends out of range are clamped, and the rare ones it sends to infinity or NaN
        (a coupling scale near zero) become the range's ends or its middle, with no gradient: a
        pasted sample is always a valid image."""
        latents = []
        for base in self.flow.q0:
            eps = torch.randn((count, *base.shape), generator=generator).to(base.loc)
            latents.append(base.loc + torch.exp(base.log_scale) * eps)
        x, _ = self.flow.forward_and_log_det(latents)
        return torch.nan_to_num(x + 0.5, nan=0.5, posinf=1.0, neginf=0.0).clamp(0, 1)


def border_term(log_probs: torch.Tensor) -> torch.Tensor:
    """``KL(U || p)`` averaged over pixels, for closed-set log-probabilities ``[N, K, H, W]``:
    ``-log K - mean_k log p_k``; 0 when p is uniform."""
    k = log_probs.shape[1]
    return (-math.log(k) - log_probs.mean(1)).mean()


def inlier_patches(
    images: torch.Tensor, excluded: torch.Tensor, patch: int, per_image: int, generator: torch.Generator
) -> torch.Tensor:
    """``[N, 3, P, P]`` random crops of ``images [B, 3, H, W]`` (values in [0, 1]) with no pixel of
    ``excluded [B, H, W]`` (pasted negatives, padding); images too small or too covered give none."""
    crops = []
    height, width = images.shape[-2:]
    if height < patch or width < patch:
        return images.new_zeros((0, CHANNELS, patch, patch))
    for b in range(images.shape[0]):
        found = 0
        for _ in range(8 * per_image):
            if found == per_image:
                break
            y = int(torch.randint(0, height - patch + 1, (1,), generator=generator))
            x = int(torch.randint(0, width - patch + 1, (1,), generator=generator))
            if bool(excluded[b, y : y + patch, x : x + patch].any()):
                continue
            crops.append(images[b, :, y : y + patch, x : x + patch])
            found += 1
    return torch.stack(crops) if crops else images.new_zeros((0, CHANNELS, patch, patch))


def paste_samples(images: torch.Tensor, samples: torch.Tensor, slots: list, pasted: torch.Tensor) -> torch.Tensor:
    """``images [B, 3, H, W]`` with ``samples [N, 3, P, P]`` (same normalisation) pasted at the
    flow slots (one sample per image whose slot is not ``None``, in order), on the slot's pixels of
    ``pasted [B, H, W]``."""
    out = images.clone()
    n = 0
    for b, slot in enumerate(slots):
        if slot is None:
            continue
        h, w = slot.mask.shape
        rows, cols = slice(slot.top, slot.top + h), slice(slot.left, slot.left + w)
        keep = pasted[b, rows, cols].unsqueeze(0)
        out[b, :, rows, cols] = torch.where(keep, samples[n, :, :h, :w], out[b, :, rows, cols])
        n += 1
    return out


def patch_log_probs(model: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """Closed-set log-probabilities ``[N, K, P, P]`` of normalised patches: a per-pixel model's
    log-softmax; a mask transformer's marginal normalised over the known classes (the patch padded
    to a multiple of 32 for it, the padding cropped off again)."""
    if isinstance(model, ESPNetV2Segmentation):
        logits, _ = model.forward_dense(patches)
        return logits.log_softmax(1)
    size = patches.shape[-2:]
    padded = F.pad(patches, (0, (-size[1]) % SIZE_DIVISOR, 0, (-size[0]) % SIZE_DIVISOR))
    output = model(padded, return_aux=False)
    probs = output.class_logits.softmax(-1)[..., :-1]
    masks = F.interpolate(output.mask_logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
    marginal = torch.einsum("bqk,bqhw->bkhw", probs, masks.sigmoid())[..., : size[0], : size[1]]
    tiny = torch.finfo(marginal.dtype).tiny
    return (marginal / marginal.sum(1, keepdim=True).clamp_min(tiny)).clamp_min(tiny).log()


def flow_generator(seed: int, step: int, rank: int, micro_batch: int) -> torch.Generator:
    """The flow's random stream of one micro-batch, fixed by the run seed and its position (so a
    resumed run draws the same samples)."""
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, 3, step, rank, micro_batch]).integers(2**62)))


class FlowNegatives:
    """One micro-batch's synthetic negatives: the flow's likelihood of the batch's inlier patches,
    its samples pasted at the flow slots, and the flow's update.

    Args:
        flow: the flow (training mode).
        config: its settings.
        batch: the collated micro-batch (normalised images, slots, outlier and padding masks).
        generator: the micro-batch's random stream (:func:`flow_generator`).
    """

    def __init__(self, flow: PatchFlow, config: FlowConfig, batch: Batch, generator: torch.Generator) -> None:
        self.flow, self.config, self.batch, self.generator = flow, config, batch, generator
        mean = torch.tensor(IMAGENET_MEAN, device=batch.images.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=batch.images.device).view(1, 3, 1, 1)
        self.mean, self.std = mean, std
        pixels = (batch.images * std + mean).clamp(0, 1)
        patches = inlier_patches(pixels, batch.outliers | batch.padding, flow.patch, config.inlier_patches, generator)
        self.nll = flow.nll_per_dim(patches, generator) if patches.shape[0] else None
        count = sum(slot is not None for slot in batch.flow_slots)
        self.samples = flow.sample(count, generator) if count else None

    def pasted_batch(self) -> Batch:
        """The batch with the (detached) samples in its flow slots: the model's loss on them does
        not reach the flow."""
        if self.samples is None:
            return self.batch
        normalised = (self.samples.detach() - self.mean) / self.std
        images = paste_samples(self.batch.images, normalised, self.batch.flow_slots, self.batch.outliers)
        return replace(self.batch, images=images)

    def train_step(self, model: nn.Module, share: float) -> dict[str, float]:
        """Back-propagate the flow's loss (times ``share``, the micro-batch's part of the step):
        ``nll + border_weight * border``, the border term through the model in eval mode with its
        own weights frozen; returns the two terms for the log."""
        terms: dict[str, torch.Tensor] = {}
        if self.nll is not None:
            terms["flow_nll"] = self.nll * share
        if self.samples is not None and self.config.border_weight > 0:
            frozen = [(p, p.requires_grad) for p in model.parameters()]
            was_training = model.training
            model.eval()
            try:
                for parameter, _ in frozen:
                    parameter.requires_grad_(False)
                log_probs = patch_log_probs(model, (self.samples - self.mean) / self.std)
                terms["flow_border"] = self.config.border_weight * border_term(log_probs) * share
            finally:
                for parameter, flag in frozen:
                    parameter.requires_grad_(flag)
                model.train(was_training)
        if terms:
            torch.stack(list(terms.values())).sum().backward()
        return {name: float(value.detach()) for name, value in terms.items()}
