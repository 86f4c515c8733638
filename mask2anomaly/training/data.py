"""Training examples, each fully determined by the run seed and its global sample number.

Sample number ``n`` (the ``n``-th image the run consumes, counted over all processes and
accumulation steps) picks the dataset index from a per-epoch permutation seeded by
``(seed, epoch)`` and draws its augmentation from a generator seeded by ``(seed, n)``; the loss's
random points come from a torch generator seeded the same way. Nothing depends on which process
or micro-batch handles the image — which makes a resumed run, a DDP run and a single-process run
on the joined batch take identical steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mask2anomaly import data as datasets
from mask2anomaly.data.anomaly_mix import (
    CocoOutlierPool,
    FolderOutlierPool,
    OutlierPool,
    SyntheticOutlierPool,
    anomaly_mix,
)
from mask2anomaly.data.base import UNKNOWN, VOID, Sample
from mask2anomaly.data.coco_panoptic import CocoPanopticReader
from mask2anomaly.data.negatives import (
    Placement,
    negative_window,
    paste_window,
    place,
    placed_mask,
    rectangle_mask,
)
from mask2anomaly.data.transforms import TrainTransform
from mask2anomaly.errors import UserError
from mask2anomaly.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, padded_size
from mask2anomaly.training.config import DataConfig
from mask2anomaly.training.pseudo_labels import PseudoLabeller


@dataclass
class Example:
    """One augmented training image.

    Attributes:
        image: ``[3, H, W]`` float32, normalised like the model's input.
        labels: ``[T]`` int64 class of each target mask.
        masks: ``[T, H, W]`` bool target masks.
        outliers: ``[H, W]`` bool pasted-outlier pixels (AnomalyMix or DenseHybrid negatives).
        generator: torch generator for this image's random loss points.
        semantic: ``[H, W]`` int64 closed-set labels for per-pixel models, :data:`VOID` where void
            or pasted.
        flow_slot: where the trainer pastes the flow's sample (DenseHybrid's synthetic negatives),
            or ``None``; its pixels are already in ``outliers``.
    """

    image: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    outliers: torch.Tensor
    generator: torch.Generator
    semantic: torch.Tensor
    flow_slot: Placement | None = None


def build_outlier_pool(spec: str | None, seed: int) -> OutlierPool | None:
    """``synthetic``, ``folder:PATH`` or ``coco:PANOPTIC_JSON`` (the paper's class filter)."""
    if spec is None:
        return None
    kind, _, path = spec.partition(":")
    if kind == "synthetic":
        return SyntheticOutlierPool(seed=seed)
    if kind == "folder" and path:
        return FolderOutlierPool(Path(path))
    if kind == "coco" and path:
        return CocoOutlierPool(CocoPanopticReader(path))
    raise UserError(f"data.outlier_pool {spec!r}: expected synthetic, folder:PATH or coco:PANOPTIC_JSON")


def targets_of(sample: Sample, kind: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target classes ``[T]`` and masks ``[T, H, W]`` of a sample.

    ``semantic``: one mask per known class present (void and unknown pixels belong to none);
    ``panoptic``: one mask per non-crowd segment of a known class.
    """
    if kind == "semantic":
        if sample.semantic is None:
            raise UserError(f"{sample.name}: semantic targets need a semantic label map")
        classes = [c for c in np.unique(sample.semantic).tolist() if c < num_classes]
        masks = np.stack([sample.semantic == c for c in classes]) if classes else np.zeros((0, *sample.size), bool)
        return torch.tensor(classes, dtype=torch.int64), torch.from_numpy(masks)
    if sample.instances is None or sample.segments is None:
        raise UserError(f"{sample.name}: panoptic targets need instances and segments")
    kept = [s for s in sample.segments if 0 <= s.category < num_classes and not s.iscrowd]
    masks = np.stack([sample.instances == s.id for s in kept]) if kept else np.zeros((0, *sample.size), bool)
    return torch.tensor([s.category for s in kept], dtype=torch.int64), torch.from_numpy(masks)


def outlier_pixels(sample: Sample) -> np.ndarray:
    """``[H, W]`` bool: pixels of pasted outliers (semantic label 254)."""
    if sample.semantic is not None:
        return sample.semantic == UNKNOWN
    if sample.anomaly is not None:
        return sample.anomaly == 1
    return np.zeros(sample.size, bool)


class TrainingData:
    """Deterministic augmented examples for one run.

    Args:
        config: the data section of the run.
        num_classes: K (targets of other classes are dropped).
        seed: run seed.
        labeller: the initial network's labeller, for ``config.pseudo_labels``.
    """

    def __init__(self, config: DataConfig, num_classes: int, seed: int, labeller: PseudoLabeller | None = None) -> None:
        self.config, self.num_classes, self.seed = config, num_classes, seed
        if config.pseudo_labels and labeller is None:
            raise UserError("data.pseudo_labels needs the initial network (train.init) to label the images")
        self.labeller = labeller if config.pseudo_labels else None
        self.reader = datasets.open_spec(config.train)
        if len(self.reader) == 0:
            raise UserError(f"training set {config.train!r} has no images")
        self.pool = build_outlier_pool(config.outlier_pool, seed)
        self.transform = TrainTransform(
            crop_size=tuple(config.crop_size),
            short_edge=tuple(config.short_edge),
            max_long=config.max_long,
            flip_prob=config.flip,
            color=config.color_jitter,
        )

    def dataset_index(self, number: int) -> int:
        epoch, position = divmod(number, len(self.reader))
        return int(np.random.default_rng([self.seed, epoch]).permutation(len(self.reader))[position])

    def example(self, number: int) -> Example:
        """The ``number``-th training image of the run."""
        rng = np.random.default_rng([self.seed, 1, number])
        index = self.dataset_index(number)
        sample = self.reader[index]
        if self.labeller is not None:
            sample = sample.replace(semantic=self.labeller.labels(index, sample))
        if self.pool is not None and self.config.negatives is None:
            sample = anomaly_mix(sample, self.pool, rng, probability=self.config.anomaly_mix_probability)
        sample = self.transform(sample, rng)
        flow_slot = None
        if self.config.negatives is not None:
            sample, flow_slot = self._paste_negative(sample, rng)
        labels, masks = targets_of(sample, self.config.target, self.num_classes)
        image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1).float() / 255
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        generator = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, 2, number]).integers(2**62)))
        outliers = torch.from_numpy(outlier_pixels(sample))
        semantic = torch.full(sample.size, VOID, dtype=torch.int64)
        if sample.semantic is not None:
            known = torch.from_numpy(sample.semantic.astype(np.int64))
            semantic = torch.where(known < self.num_classes, known, semantic)
        return Example((image - mean) / std, labels, masks, outliers, generator, semantic, flow_slot)

    def _paste_negative(self, sample: Sample, rng: np.random.Generator) -> tuple[Sample, Placement | None]:
        """DenseHybrid's one negative per crop: a real one pasted here, or a rectangle left for the
        flow's sample (its pixels marked unknown either way)."""
        config = self.config.negatives
        assert config is not None
        real = config.source == "pool" or (config.source == "mixed" and rng.random() < config.real_probability)
        if real:
            assert self.pool is not None
            cutout = self.pool[int(rng.integers(len(self.pool)))]
            window, mask = negative_window(
                cutout, config.patch, tuple(config.jitter), config.rectangle_probability, rng
            )
            where = place(sample.size, mask, rng)
            image, pasted = paste_window(sample.image, window, where)
            slot = None
        else:
            slot = place(sample.size, rectangle_mask(config.patch, rng), rng)
            image, pasted = sample.image, placed_mask(sample.size, slot)
        semantic = sample.semantic.copy() if sample.semantic is not None else np.full(sample.size, VOID, np.uint8)
        semantic[pasted] = UNKNOWN
        return sample.replace(image=image, semantic=semantic), slot


@dataclass
class Batch:
    """Examples padded to a common size divisible by 32 and stacked.

    Attributes:
        images: ``[B, 3, H, W]``.
        targets: per image ``{"labels": [T], "masks": [T, H, W]}``.
        outliers: ``[B, H, W]`` bool.
        padding: ``[B, H, W]`` bool, true outside the images.
        generators: one per image.
        semantic: ``[B, H, W]`` int64 closed-set labels (:data:`VOID` on void, pasted and padding).
        flow_slots: per image, where the flow's sample goes, or ``None``.
    """

    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]]
    outliers: torch.Tensor
    padding: torch.Tensor
    generators: list[torch.Generator]
    semantic: torch.Tensor
    flow_slots: list[Placement | None]

    def to(self, device: torch.device) -> Batch:
        targets = [{k: v.to(device) for k, v in t.items()} for t in self.targets]
        return Batch(
            self.images.to(device),
            targets,
            self.outliers.to(device),
            self.padding.to(device),
            self.generators,
            self.semantic.to(device),
            self.flow_slots,
        )


def collate(examples: list[Example]) -> Batch:
    """Pad (image 0, masks false, outliers false, labels void) to the largest size rounded up to 32
    and stack."""
    height, width = padded_size(max(e.image.shape[1] for e in examples), max(e.image.shape[2] for e in examples))
    images, targets, outliers, padding, semantic = [], [], [], [], []
    for e in examples:
        pad = (0, width - e.image.shape[2], 0, height - e.image.shape[1])
        images.append(F.pad(e.image, pad))
        targets.append({"labels": e.labels, "masks": F.pad(e.masks, pad)})
        outliers.append(F.pad(e.outliers, pad))
        padding.append(F.pad(torch.zeros(e.image.shape[1:], dtype=torch.bool), pad, value=True))
        semantic.append(F.pad(e.semantic, pad, value=VOID))
    return Batch(
        torch.stack(images),
        targets,
        torch.stack(outliers),
        torch.stack(padding),
        [e.generator for e in examples],
        torch.stack(semantic),
        [e.flow_slot for e in examples],
    )
