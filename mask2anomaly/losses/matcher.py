"""Hungarian matching of predicted masks to ground-truth segments (Mask2Former's matcher).

Reproduces ``mask2former/modeling/matcher.py`` (``HungarianMatcher.memory_efficient_forward``), paper
000 Sec. 3: per image, the cost of giving target ``t`` to query ``q`` is
``cost_class * -softmax(C_q)[label_t] + cost_mask * BCE(M_q, mask_t) + cost_dice * dice(M_q, mask_t)``,
the two mask terms on the same ``num_points`` uniformly random points for every prediction and
target, and ``scipy.optimize.linear_sum_assignment`` picks the cheapest one-to-one assignment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from scipy.optimize import linear_sum_assignment

from mask2anomaly.errors import UserError
from mask2anomaly.losses.mask_losses import pairwise_dice, pairwise_sigmoid_bce
from mask2anomaly.losses.point_sampling import Generators, generator_of, point_sample, uniform_point_coords

Target = Mapping[str, torch.Tensor]
"""One image's ground truth: ``labels [T]`` (long, in ``[0, K)``) and ``masks [T, H, W]`` (bool or float)."""


def check_targets(targets: Sequence[Target], batch_size: int) -> None:
    """Raise a ``ValueError`` naming the first malformed target.

    Args:
        targets: one mapping per image with ``labels [T]`` and ``masks [T, H, W]``.
        batch_size: the number of images ``B`` the predictions have.
    """
    if len(targets) != batch_size:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch_size} predictions")
    for index, target in enumerate(targets):
        if "labels" not in target or "masks" not in target:
            raise ValueError(f"target {index} needs keys 'labels' and 'masks'; has {sorted(target)}")
        labels, masks = target["labels"], target["masks"]
        if labels.dim() != 1 or masks.dim() != 3 or masks.shape[0] != labels.shape[0]:
            raise ValueError(
                f"target {index}: expected labels [T] and masks [T, H, W]; "
                f"got {tuple(labels.shape)} and {tuple(masks.shape)}"
            )


class HungarianMatcher:
    """One-to-one assignment of queries to targets with minimal class + mask + dice cost.

    Args:
        cost_class: weight of ``-softmax(C)[target class]``.
        cost_mask: weight of the mean sigmoid binary cross-entropy on the sampled points.
        cost_dice: weight of the dice loss on the sampled points.
        num_points: uniformly random points shared by all predictions and targets of an image.

    Raises:
        UserError: for negative weights, all-zero weights or ``num_points < 1``.
    """

    def __init__(
        self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int = 12544
    ) -> None:
        costs = (cost_class, cost_mask, cost_dice)
        if min(costs) < 0 or max(costs) == 0:
            raise UserError(f"matcher costs must be >= 0 and not all 0; got class/mask/dice {costs}")
        if num_points < 1:
            raise UserError(f"matcher num_points must be >= 1; got {num_points}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def __repr__(self) -> str:
        return (
            f"HungarianMatcher(cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points})"
        )

    @torch.no_grad()
    def cost_matrix(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor,
        coords: torch.Tensor,
    ) -> torch.Tensor:
        """The matching cost of one image at given points.

        Args:
            class_logits: ``[Q, K + 1]`` class logits.
            mask_logits: ``[Q, h, w]`` mask logits (any resolution).
            labels: ``[T]`` target classes.
            masks: ``[T, H, W]`` target masks (any resolution).
            coords: ``[1, P, 2]`` normalised points ``(x, y)`` used for every mask.

        Returns:
            ``[Q, T]`` float32 cost.
        """
        probs = class_logits.float().softmax(-1)
        cost_class = -probs[:, labels]
        pred_points = point_sample(mask_logits.unsqueeze(0).float(), coords)[0]
        target_points = point_sample(masks.unsqueeze(0).to(device=coords.device, dtype=torch.float32), coords)[0]
        return (
            self.cost_class * cost_class
            + self.cost_mask * pairwise_sigmoid_bce(pred_points, target_points)
            + self.cost_dice * pairwise_dice(pred_points, target_points)
        )

    @torch.no_grad()
    def __call__(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        targets: Sequence[Target],
        generator: Generators = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match every image of the batch.

        One ``[1, num_points, 2]`` draw of uniform points per image, in batch order, also for images
        without targets (so the random stream does not depend on the labels).

        Args:
            class_logits: ``[B, Q, K + 1]``; the last class is "no object".
            mask_logits: ``[B, Q, h, w]``.
            targets: ``B`` mappings with ``labels [T_b]`` and ``masks [T_b, H, W]``.
            generator: source of the random points: one for the batch, one per image, or ``None``
                for torch's global generator.

        Returns:
            Per image ``(pred_indices, target_indices)``, two int64 CPU tensors of length
            ``min(Q, T_b)``, pred_indices ascending; empty for an image without targets.

        Raises:
            ValueError: for malformed targets or a non-finite cost (diverged predictions).
        """
        check_targets(targets, class_logits.shape[0])
        matches = []
        for image, target in enumerate(targets):
            coords = uniform_point_coords(1, self.num_points, mask_logits.device, generator_of(generator, image))
            labels = target["labels"].to(class_logits.device)
            if labels.numel() == 0:
                empty = torch.empty(0, dtype=torch.int64)
                matches.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(class_logits[image], mask_logits[image], labels, target["masks"], coords)
            if not torch.isfinite(cost).all():
                raise ValueError(f"matching cost of image {image} is not finite: the predictions contain NaN or inf")
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            matches.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return matches
