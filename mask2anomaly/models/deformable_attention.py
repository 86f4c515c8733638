"""Multi-scale deformable attention (Zhu et al., Deformable DETR, ICLR 2021) in pure PyTorch.

Each query looks at a few learned sampling points around its reference point on every feature
level; the values there are read by bilinear interpolation (``grid_sample``) and averaged with
learned weights. The same code runs on CPU and GPU — no compiled operator is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def deformable_sample(
    value: torch.Tensor,
    shapes: list[tuple[int, int]],
    locations: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted bilinear sampling of multi-level values.

    Args:
        value: ``[B, S, M, D]`` values of all levels flattened and concatenated (S = sum of H_l * W_l),
            M heads of width D.
        shapes: ``(H_l, W_l)`` of each of the L levels.
        locations: ``[B, Q, M, L, P, 2]`` sampling positions as (x, y) in [0, 1] of each level.
        weights: ``[B, Q, M, L, P]`` attention weights (softmax-normalised over L * P).

    Returns:
        ``[B, Q, M * D]`` attended values.
    """
    batch, _, heads, dim = value.shape
    queries = locations.shape[1]
    grids = 2 * locations - 1
    out = None
    start = 0
    for level, (height, width) in enumerate(shapes):
        value_l = value[:, start : start + height * width]
        start += height * width
        value_l = value_l.permute(0, 2, 3, 1).reshape(batch * heads, dim, height, width)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled = F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        weight_l = weights[:, :, :, level].transpose(1, 2).flatten(0, 1).unsqueeze(1)
        contribution = (sampled * weight_l).sum(-1)
        out = contribution if out is None else out + contribution
    assert out is not None
    return out.view(batch, heads * dim, queries).transpose(1, 2)


class MultiScaleDeformableAttention(nn.Module):
    """Deformable self-attention over L feature levels with M heads and P points per head and level.

    Parameter names (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``)
    are those of the reference implementation, so its checkpoints map one to one.
    """

    def __init__(self, dim: int, heads: int, levels: int, points: int) -> None:
        super().__init__()
        self.dim, self.heads, self.levels, self.points = dim, heads, levels, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2.0 * torch.pi / self.heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.heads, 1, 1, 2).repeat(1, self.levels, self.points, 1)
        grid = grid * torch.arange(1, self.points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """Attend from ``query [B, Q, C]`` (reference points ``[B or 1, Q, 2]`` in [0, 1], (x, y))
        to ``value [B, S, C]`` laid out as the levels ``shapes``. Returns ``[B, Q, C]``."""
        batch, queries, _ = query.shape
        value = self.value_proj(value).view(batch, -1, self.heads, self.dim // self.heads)
        offsets = self.sampling_offsets(query).view(batch, queries, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(batch, queries, self.heads, self.levels * self.points)
        weights = weights.softmax(-1).view(batch, queries, self.heads, self.levels, self.points)
        normaliser = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
        locations = reference_points[:, :, None, None, None, :] + offsets / normaliser[None, None, None, :, None, :]
        return self.output_proj(deformable_sample(value, shapes, locations, weights))
