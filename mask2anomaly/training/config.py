"""Typed configuration of a training run; published recipes are YAML files validated against it.

Architecture (``model``), data, optimisation, losses and bookkeeping are kept apart. Every field
has the Mask2Former / Mask2Anomaly Cityscapes default unless its docstring says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mask2anomaly.losses.config import OutlierLossConfig
from mask2anomaly.models.config import ModelConfig

TARGETS = ("semantic", "panoptic")


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
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if len(self.crop_size) != 2 or len(self.short_edge) != 2:
            raise ValueError("crop_size and short_edge need two values each")


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
class RunConfig:
    """Everything a training run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
