"""Point sampling of dense maps: how Mask2Former trains masks on a few thousand points.

Reproduces detectron2's PointRend helpers (``projects/PointRend/point_rend/point_features.py``:
``point_sample`` and ``get_uncertain_point_coords_with_randomness``) with the uncertainty Mask2Former
uses for mask logits, ``-|logit|`` (``mask2former/modeling/criterion.py``, ``calculate_uncertainty``).
Unlike the references, every random draw takes an optional :class:`torch.Generator`, so that a
training run can be resumed bit for bit.

Coordinates are normalised to ``[0, 1]`` as ``(x, y)``: ``(0, 0)`` is the top-left corner of the
top-left pixel and ``(1, 1)`` the bottom-right corner of the bottom-right pixel (``align_corners=False``),
so the same coordinates address a stride-4 prediction and a full-resolution target alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample maps at normalised points (zero outside the map, ``align_corners=False``).

    Args:
        maps: ``[B, C, H, W]``, or ``[N, H, W]`` for one channel per map; floating point.
        coords: ``[B, P, 2]`` (or ``[N, P, 2]``) points ``(x, y)`` in ``[0, 1]``.

    Returns:
        ``[B, C, P]`` for 4-d maps, ``[N, P]`` for 3-d maps.

    Raises:
        ValueError: when the shapes do not fit together.
    """
    single_channel = maps.dim() == 3
    if single_channel:
        maps = maps.unsqueeze(1)
    if maps.dim() != 4 or coords.dim() != 3 or coords.shape[-1] != 2 or coords.shape[0] != maps.shape[0]:
        raise ValueError(
            f"point_sample expects maps [B, C, H, W] or [N, H, W] and coords [B, P, 2]; "
            f"got maps {tuple(maps.shape)} and coords {tuple(coords.shape)}"
        )
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(maps.dtype)
    sampled = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(3)
    return sampled.squeeze(1) if single_channel else sampled


def uniform_point_coords(
    num_maps: int, num_points: int, device: torch.device | str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform random points, one draw of ``torch.rand(num_maps, num_points, 2)``.

    Args:
        num_maps: number of point sets.
        num_points: points per set.
        device: where the result lives.
        generator: source of randomness; ``None`` uses torch's global generator. The numbers are
            drawn on the generator's device and then moved, so a CPU generator gives the same points
            whatever ``device`` is.

    Returns:
        ``[num_maps, num_points, 2]`` float32 coordinates ``(x, y)`` in ``[0, 1)``.
    """
    draw_device = generator.device if generator is not None else device
    return torch.rand(num_maps, num_points, 2, generator=generator, device=draw_device).to(device)


def uncertain_point_coords(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mask2Former's importance sampling: points biased towards mask logits near 0.

    Draws ``int(num_points * oversample_ratio)`` uniform candidates per map, keeps the
    ``int(importance_sample_ratio * num_points)`` whose bilinearly sampled logit has the smallest
    ``|logit|`` (uncertainty ``-|logit|``), and appends uniform points up to ``num_points``. The random
    draws happen in this order (candidates, then the extra uniform points), as in detectron2, so a
    seeded global generator reproduces the reference implementations.

    Args:
        logits: ``[N, 1, H, W]`` mask logits (only read; no gradient flows through the choice).
        num_points: points per map, ``P``.
        oversample_ratio: candidates per point, ``>= 1``.
        importance_sample_ratio: fraction of ``P`` chosen by uncertainty, in ``[0, 1]``.
        generator: source of randomness; ``None`` uses torch's global generator.

    Returns:
        ``[N, P, 2]`` coordinates ``(x, y)`` in ``[0, 1]``; the first
        ``int(importance_sample_ratio * P)`` are the uncertain ones.

    Raises:
        ValueError: for a logit tensor that is not ``[N, 1, H, W]`` or ratios out of range.
    """
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"uncertain_point_coords expects logits [N, 1, H, W]; got {tuple(logits.shape)}")
    if oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
        raise ValueError(
            f"need oversample_ratio >= 1 and 0 <= importance_sample_ratio <= 1; "
            f"got {oversample_ratio} and {importance_sample_ratio}"
        )
    num_maps = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    with torch.no_grad():
        candidates = uniform_point_coords(num_maps, num_candidates, logits.device, generator)
        uncertainty = -point_sample(logits.detach(), candidates)[:, 0].abs()
        chosen = uncertainty.topk(num_uncertain, dim=1).indices
        coords = torch.gather(candidates, 1, chosen.unsqueeze(-1).expand(-1, -1, 2))
        if num_points > num_uncertain:
            extra = uniform_point_coords(num_maps, num_points - num_uncertain, logits.device, generator)
            coords = torch.cat([coords, extra], dim=1)
    return coords


Generators = torch.Generator | Sequence[torch.Generator] | None
"""One generator for the whole batch, one per image, or ``None`` for torch's global generator."""


def generator_of(generators: Generators, image: int) -> torch.Generator | None:
    """The generator that draws image ``image``'s random points.

    With one generator per image, an image's points do not depend on the other images of its batch,
    so splitting a batch over processes or accumulation steps draws the same points.
    """
    if generators is None or isinstance(generators, torch.Generator):
        return generators
    return generators[image]
