"""Sine positional encoding of a feature map (DETR's, normalised to [0, 2*pi])."""

from __future__ import annotations

import math
from functools import lru_cache

import torch


@lru_cache(maxsize=16)
def _sine_table(height: int, width: int, num_feats: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    eps, scale, temperature = 1e-6, 2 * math.pi, 10000
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos_x = x[:, None] / dim_t
    pos_y = y[:, None] / dim_t
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat(
        (pos_y[:, None, :].expand(height, width, num_feats), pos_x[None, :, :].expand(height, width, num_feats)),
        dim=2,
    )
    return pos.permute(2, 0, 1).contiguous().to(dtype)


def sine_position_encoding(
    height: int, width: int, channels: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Positional encoding ``[channels, height, width]``: first half encodes y, second half x.

    Position ``i`` (1-based) along an axis of length ``n`` is mapped to ``2*pi*i/n`` and encoded with
    interleaved sines and cosines of geometrically spaced frequencies. The result depends only on the
    shape, so it is cached.
    """
    return _sine_table(height, width, channels // 2, torch.device(device), dtype)
