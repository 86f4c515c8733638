"""Typed configuration of a training run; published recipes are YAML files validated against it.

Architecture (``model``), data, optimisation, losses and bookkeeping are kept apart. Every field
has the Mask2Former / Mask2Anomaly Cityscapes default unless its docstring says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mask2anomaly.losses.config import OutlierLossConfig
from mask2anomaly.models.config import ModelConfig
from mask2anomaly.models.espnetv2 import ESPNetV2Config

TARGETS = ("semantic", "panoptic")
NEGATIVE_SOURCES = ("pool", "flow", "mixed")


@dataclass(frozen=True)
class NegativesConfig:
    """DenseHybrid's pasted negatives, one per training crop (:mod:`mask2anomaly.data.negatives`).

    Attributes:
        source: ``pool`` (real negatives from ``data.outlier_pool``), ``flow`` (samples of the
            jointly trained normalising flow, see the ``flow`` section) or ``mixed``.
        patch: side of the negative window (the authors: 192 in 512 crops; the flow's patch size).
        jitter: range of the random factor on the negative's scale (the authors: 0.5-2).
        rectangle_probability: chance that a rectangle rather than the object mask is pasted (0.5).
        real_probability: with ``mixed``, the chance that a crop's negative is real (paper 001's b).
    """

    source: str = "pool"
    patch: int = 192
    jitter: tuple[float, ...] = (0.5, 2.0)
    rectangle_probability: float = 0.5
    real_probability: float = 0.5

    def __post_init__(self) -> None:
        if self.source not in NEGATIVE_SOURCES:
            raise ValueError(f"negatives.source must be one of {NEGATIVE_SOURCES}, got {self.source!r}")
        if self.patch < 8 or len(self.jitter) != 2 or not 0 < self.jitter[0] <= self.jitter[1]:
            raise ValueError("negatives: patch must be at least 8 and jitter a range (low, high) of positive factors")
        for name in ("rectangle_probability", "real_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"negatives.{name} must lie in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class DataConfig:
    """What to train on and how to augment it.

    Attributes:
        train: training set as ``NAME:PATH[?options]`` (see ``mask2anomaly.data``).
        val: optional validation set, same syntax; evaluated every ``TrainConfig.val_every`` steps.
        target: ``"semantic"`` (one mask per class present, Mask2Anomaly's Cityscapes setting) or
            ``"panoptic"`` (one mask per segment; COCO open-set panoptic).
        crop_size: training crop ``(H, W)``.
        short_edge: range of the random shortest-edge resize (large-scale jitter).
        max_long: cap on the longer side after resizing.
        flip: horizontal flip probability.
        color_jitter: SSD-style colour augmentation.
        outlier_pool: AnomalyMix cut-outs: ``synthetic``, ``folder:PATH`` or ``coco:PANOPTIC_JSON``;
            ``None`` disables pasting.
        anomaly_mix_probability: chance that a training image gets a pasted outlier.
        negatives: DenseHybrid's pasting (one negative per crop, after the augmentation) instead of
            AnomalyMix; its real negatives come from ``outlier_pool``.
        pseudo_labels: closed-set targets from the initial network's predictions (``train.init``)
            for a training set without semantic labels; its anomaly pixels are void
            (:mod:`mask2anomaly.training.pseudo_labels`).
        num_workers: data-loading processes.
    """

    train: str = ""
    val: str | None = None
    target: str = "semantic"
    crop_size: tuple[int, ...] = (380, 760)
    short_edge: tuple[int, ...] = (512, 2048)
    max_long: int | None = 4096
    flip: float = 0.5
    color_jitter: bool = True
    outlier_pool: str | None = None
    anomaly_mix_probability: float = 0.2
    negatives: NegativesConfig | None = None
    pseudo_labels: bool = False
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if len(self.crop_size) != 2 or len(self.short_edge) != 2:
            raise ValueError("crop_size and short_edge need two values each")
        if self.negatives is not None and self.negatives.source != "flow" and self.outlier_pool is None:
            raise ValueError(f"negatives from {self.negatives.source!r} need data.outlier_pool (the real negatives)")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and a polynomial decay, gradient clipping and accumulation.

    Attributes:
        lr, weight_decay, betas, eps: AdamW settings.
        backbone_lr_multiplier: factor on the backbone's learning rate (Mask2Former: 0.1).
        max_steps: optimiser steps of the run.
        batch_size: images per optimiser step, over all processes and accumulation steps.
        accumulation: micro-batches per optimiser step (per process).
        warmup_steps, warmup_factor: linear warm-up from ``lr * warmup_factor``.
        poly_power: exponent of the polynomial decay to 0 at ``max_steps``.
        clip_grad: full-model gradient-norm clip (``0`` disables).
        amp: mixed precision on CUDA (ignored on CPU).
    """

    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    backbone_lr_multiplier: float = 0.1
    max_steps: int = 90000
    batch_size: int = 16
    accumulation: int = 1
    warmup_steps: int = 0
    warmup_factor: float = 1.0
    poly_power: float = 0.9
    clip_grad: float = 0.01
    amp: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "accumulation"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "warmup_steps", "clip_grad", "backbone_lr_multiplier"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")


@dataclass(frozen=True)
class LossConfig:
    """Set-prediction losses (paper Eq. 1-2) and the optional outlier loss of stage 2 (Eq. 10-12).

    Attributes:
        class_weight, mask_weight, dice_weight: loss and matching-cost weights.
        no_object_weight: cross-entropy weight of the "no object" class.
        num_points: points sampled per mask for the matcher and the mask losses.
        oversample_ratio, importance_sample_ratio: Mask2Former's uncertainty-based sampling.
        outlier: the stage-2 outlier loss, all its settings in one place (kind ``contrastive``,
            ``bce`` or ``rba``, margin, variant, weight; each kind's defaults from its source, see
            :class:`~mask2anomaly.losses.config.OutlierLossConfig`); ``None`` (stage 1): no outlier loss.
    """

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    outlier: OutlierLossConfig | None = None

    def __post_init__(self) -> None:
        if self.num_points < 1:
            raise ValueError(f"num_points must be at least 1, got {self.num_points}")


@dataclass(frozen=True)
class MiningConfig:
    """The paper's unknown-instance mining used by the validation of an open-set panoptic run
    (``data.target = panoptic`` and a validation set with panoptic labels); the same settings as
    ``evaluate --mining-*`` (see :mod:`mask2anomaly.methods.open_set_panoptic`).

    Attributes:
        num_components: largest connected components examined (paper 000 Sec. 7.1: 2 / 2 / 3 for the
            5 / 10 / 20% COCO splits).
        iterations: label-propagation steps of the connected components (paper: 500).
        overlap: reading of "overlap": ``iou`` (the paper's words), ``coverage`` or ``soft``.
        min_overlap: least overlap of a component with its mask.
        entropy: reading of "average entropy": ``normalised``, ``mean`` or ``binary``.
    """

    num_components: int = 3
    iterations: int = 500
    overlap: str = "iou"
    min_overlap: float = 0.5
    entropy: str = "normalised"


@dataclass(frozen=True)
class TrainConfig:
    """Bookkeeping of a run.

    Attributes:
        seed: seeds initialisation, data order, augmentation and point sampling.
        init: weights to start from (any format :func:`mask2anomaly.load_model` reads), e.g. the
            stage-1 model for contrastive fine-tuning.
        checkpoint_every: steps between checkpoints (one is always written at the end).
        log_every: steps between log lines.
        val_every: steps between validations (0: only at the end; needs ``data.val``).
        val_images: images of the validation set used (0: all).
        deterministic: deterministic algorithms (exact resume and reproducibility on CPU).
    """

    seed: int = 0
    init: str | None = None
    checkpoint_every: int = 1000
    log_every: int = 20
    val_every: int = 0
    val_images: int = 0
    deterministic: bool = True

    def __post_init__(self) -> None:
        for name in ("checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("val_every", "val_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")


@dataclass(frozen=True)
class FlowConfig:
    """The normalising flow that generates DenseHybrid's synthetic negatives, trained with the
    segmentation model (:mod:`mask2anomaly.training.flow`). Its patches are ``data.negatives.patch``
    pixels wide.

    Attributes:
        levels: multi-scale levels (each halves the resolution and splits off half the channels).
        blocks: Glow blocks (actnorm, invertible 1x1 convolution, affine coupling) per level.
        hidden: channels of the coupling networks.
        lr: the flow's learning rate (its own optimiser group, no weight decay).
        border_weight: weight of the term that draws samples to the border of the inlier
            distribution (the closed-set prediction on them made uniform), against the likelihood
            of inlier patches.
        inlier_patches: inlier patches per image for the flow's likelihood term.
    """

    levels: int = 2
    blocks: int = 4
    hidden: int = 64
    lr: float = 1e-4
    border_weight: float = 0.1
    inlier_patches: int = 2

    def __post_init__(self) -> None:
        for name in ("levels", "blocks", "hidden", "inlier_patches"):
            if getattr(self, name) < 1:
                raise ValueError(f"flow.{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.border_weight < 0:
            raise ValueError("flow.lr must be positive and flow.border_weight not negative")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs.

    ``espnetv2`` set makes the run train that per-pixel network (``model`` is then unused); ``flow``
    set trains DenseHybrid's normalising flow beside the model (``data.negatives`` from ``flow`` or
    ``mixed``).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    espnetv2: ESPNetV2Config | None = None
    flow: FlowConfig | None = None

    def __post_init__(self) -> None:
        negatives = self.data.negatives
        uses_flow = negatives is not None and negatives.source != "pool"
        if uses_flow != (self.flow is not None):
            raise ValueError("a flow section goes with data.negatives.source flow or mixed, and only with them")
        if self.flow is not None and negatives is not None and negatives.patch % 2**self.flow.levels:
            raise ValueError(f"data.negatives.patch must be divisible by 2^flow.levels = {2**self.flow.levels}")
        outlier = self.loss.outlier
        has_head = self.espnetv2.dataset_head if self.espnetv2 is not None else self.model.dataset_head
        if outlier is not None and outlier.kind == "densehybrid" and not has_head:
            raise ValueError("loss.outlier kind densehybrid needs the dataset-posterior head (dataset_head: true)")
        if self.espnetv2 is not None and outlier is not None and outlier.kind != "densehybrid":
            raise ValueError(f"an ESPNetv2 run trains with loss.outlier kind densehybrid or none, not {outlier.kind!r}")
