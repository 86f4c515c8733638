"""The closed-set training loss of Mask2Former / Mask2Anomaly stage 1.

Reproduces ``mask2former/modeling/criterion.py`` (``SetCriterion``) with the weights of
``MaskFormer.from_config`` (paper 000 Eq. 1-2, Sec. 7.3): per decoder prediction, Hungarian matching,
then cross-entropy over the ``K + 1`` classes (unmatched queries are "no object", weighted 0.1),
sigmoid cross-entropy and dice on ``num_points`` importance-sampled points of each matched mask,
each divided by the number of ground-truth masks; the same for every intermediate prediction (deep
supervision). The weights are applied here, not in the model.

Random draws, in order: the final prediction's matching (one point set per image) and mask
sampling, then the same for each intermediate prediction in layer order -- the order of the
reference code, so a seeded global generator reproduces it and a passed generator makes it
resumable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mask2anomaly.errors import UserError
from mask2anomaly.losses.mask_losses import dice_loss, sigmoid_bce_loss
from mask2anomaly.losses.matcher import HungarianMatcher, Target, check_targets
from mask2anomaly.losses.output import LossOutput
from mask2anomaly.losses.point_sampling import Generators, generator_of, point_sample, uncertain_point_coords
from mask2anomaly.models.output import MaskTransformerOutput


class SetCriterion(nn.Module):
    """Matching-based class + mask loss with deep supervision.

    Args:
        num_classes: ``K``, the known classes; class index ``K`` is "no object".
        matcher: assigns queries to targets (usually a :class:`HungarianMatcher` with the same weights).
        class_weight: weight of the cross-entropy.
        mask_weight: weight of the point-sampled sigmoid cross-entropy.
        dice_weight: weight of the point-sampled dice loss.
        no_object_weight: cross-entropy weight of the "no object" class (the others have 1).
        num_points: points sampled per matched mask.
        oversample_ratio: uniform candidates per point for the importance sampling.
        importance_sample_ratio: fraction of the points chosen where the mask logit is most uncertain.

    Raises:
        UserError: for an option out of range.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise UserError(f"num_classes must be >= 1; got {num_classes}")
        if min(class_weight, mask_weight, dice_weight, no_object_weight) < 0:
            raise UserError(
                "loss weights must be >= 0; got class/mask/dice/no-object "
                f"{(class_weight, mask_weight, dice_weight, no_object_weight)}"
            )
        if num_points < 1 or oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
            raise UserError(
                "need num_points >= 1, oversample_ratio >= 1, 0 <= importance_sample_ratio <= 1; got "
                f"{num_points}, {oversample_ratio}, {importance_sample_ratio}"
            )
        self.num_classes = num_classes
        self.matcher = matcher
        self.weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        class_weights = torch.ones(num_classes + 1)
        class_weights[-1] = no_object_weight
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(
        self,
        output: MaskTransformerOutput,
        targets: Sequence[Target],
        generator: Generators = None,
        num_masks: float | torch.Tensor | None = None,
        class_normaliser: float | torch.Tensor | None = None,
    ) -> LossOutput:
        """Loss of the final prediction and of every intermediate one.

        Args:
            output: ``class_logits [B, Q, K + 1]``, ``mask_logits [B, Q, h, w]`` and ``aux``.
            targets: ``B`` mappings with ``labels [T_b]`` and ``masks [T_b, H, W]``; the masks of
                all images share ``H x W``, the (padded) input resolution.
            generator: source of the random points: one for the batch, one per image (so that a
                batch split over processes draws the same points), or ``None`` for torch's global one.
            num_masks: normaliser of the mask losses. ``None`` counts the targets of this batch.
                Under DDP pass ``all_reduce(sum of targets) / world_size``, as the reference does;
                it is clamped to at least 1 either way.
            class_normaliser: divisor of the summed, class-weighted cross-entropy; ``None`` uses
                this batch's sum of weights (``F.cross_entropy``'s weighted mean). A trainer that
                splits a batch passes the whole batch's sum (divided like ``num_masks``).

        Returns:
            Terms ``loss_ce``, ``loss_mask``, ``loss_dice`` (final prediction) and ``loss_ce_{i}``,
            ``loss_mask_{i}``, ``loss_dice_{i}`` for ``output.aux[i]``, each times its weight.
        """
        check_targets(targets, output.class_logits.shape[0])
        if output.class_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"class_logits have {output.class_logits.shape[-1]} classes; expected {self.num_classes} + 1"
            )
        if num_masks is None:
            num_masks = float(sum(len(target["labels"]) for target in targets))
        num_masks = torch.as_tensor(num_masks, dtype=torch.float32, device=output.class_logits.device).clamp(min=1)
        predictions = [("", output.class_logits, output.mask_logits)]
        predictions += [(f"_{i}", aux.class_logits, aux.mask_logits) for i, aux in enumerate(output.aux)]
        terms: dict[str, torch.Tensor] = {}
        for suffix, class_logits, mask_logits in predictions:
            matches = self.matcher(class_logits, mask_logits, targets, generator=generator)
            losses = {"loss_ce": self.class_loss(class_logits, targets, matches, class_normaliser)}
            losses.update(self.mask_losses(mask_logits, targets, matches, num_masks, generator))
            terms.update({name + suffix: self.weights[name] * value for name, value in losses.items()})
        return LossOutput(total=torch.stack(list(terms.values())).sum(), terms=terms)

    def class_loss(
        self,
        class_logits: torch.Tensor,
        targets: Sequence[Target],
        matches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        normaliser: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Weighted cross-entropy of all queries; matched ones target their segment's class.

        Args:
            class_logits: ``[B, Q, K + 1]``.
            targets: ``B`` mappings with ``labels [T_b]``.
            matches: per image ``(pred_indices, target_indices)``.
            normaliser: divisor of the weighted sum; ``None``: ``sum_{b,q} w[y]`` of this batch.

        Returns:
            Scalar ``sum_{b,q} w[y] * -log softmax(C)[y] / sum_{b,q} w[y]`` (unweighted by ``class_weight``).
        """
        batch_size, num_queries, _ = class_logits.shape
        target_classes = torch.full(
            (batch_size, num_queries), self.num_classes, dtype=torch.int64, device=class_logits.device
        )
        for image, ((pred_indices, target_indices), target) in enumerate(zip(matches, targets, strict=True)):
            labels = target["labels"].to(class_logits.device)
            target_classes[image, pred_indices.to(class_logits.device)] = labels[target_indices.to(labels.device)]
        logits = class_logits.float().transpose(1, 2)
        if normaliser is None:
            return F.cross_entropy(logits, target_classes, weight=self.class_weights)
        total = F.cross_entropy(logits, target_classes, weight=self.class_weights, reduction="sum")
        return total / normaliser

    def mask_losses(
        self,
        mask_logits: torch.Tensor,
        targets: Sequence[Target],
        matches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        num_masks: torch.Tensor,
        generator: Generators = None,
    ) -> dict[str, torch.Tensor]:
        """Sigmoid cross-entropy and dice of the matched masks on importance-sampled points.

        Args:
            mask_logits: ``[B, Q, h, w]``.
            targets: ``B`` mappings with ``masks [T_b, H, W]`` of one common size.
            matches: per image ``(pred_indices, target_indices)``.
            num_masks: normaliser (already clamped).
            generator: source of the random points (one for the batch or one per image).

        Returns:
            ``{"loss_mask": ..., "loss_dice": ...}`` (unweighted); both 0, still attached to the
            graph, when nothing is matched (no random numbers drawn then).
        """
        device = mask_logits.device
        pred = torch.cat([mask_logits[image, pred.to(device)] for image, (pred, _) in enumerate(matches)])
        if pred.shape[0] == 0:
            zero = mask_logits.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        sizes = {tuple(target["masks"].shape[-2:]) for target in targets}
        if len(sizes) > 1:
            raise ValueError(f"target masks of one batch must share their size (pad them); got sizes {sorted(sizes)}")
        target_masks = torch.cat(
            [target["masks"][target_indices] for target, (_, target_indices) in zip(targets, matches, strict=True)]
        ).to(device=device, dtype=torch.float32)
        pred = pred.unsqueeze(1).float()
        if generator is None or isinstance(generator, torch.Generator):
            coords = uncertain_point_coords(
                pred, self.num_points, self.oversample_ratio, self.importance_sample_ratio, generator=generator
            )
        else:
            per_image, start = [], 0
            for image, (pred_indices, _) in enumerate(matches):
                count = len(pred_indices)
                if count:
                    per_image.append(
                        uncertain_point_coords(
                            pred[start : start + count],
                            self.num_points,
                            self.oversample_ratio,
                            self.importance_sample_ratio,
                            generator=generator_of(generator, image),
                        )
                    )
                start += count
            coords = torch.cat(per_image)
        point_labels = point_sample(target_masks.unsqueeze(1), coords)[:, 0]
        point_logits = point_sample(pred, coords)[:, 0]
        return {
            "loss_mask": sigmoid_bce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }
