"""Mask probabilities at image resolution, produced a band of rows at a time.

Every mask method needs ``sigmoid(M)`` of each query at image resolution, the mask logits upsampled
bilinearly first (``F.interpolate(..., align_corners=False)`` as the reference code does). Held whole,
that is ``Q x H x W`` floats: 200 MB for 100 queries at 512 x 1024, and writing, then re-reading,
a fresh buffer of that size costs more than the arithmetic. Most consumers reduce over the queries
right away (the marginal, a weighted maximum, a count), so :func:`mask_prob_bands` hands them the
probabilities a few rows at a time in one reused buffer that stays in cache.

When the image size is an integer multiple of the mask size (always the case for a mask transformer,
whose masks are at 1/4 of its padded input), the bilinear upsampling is done separably: along the
width with ``interpolate`` on the band's source rows plus one row of context each side, then along
the height as ``s`` linear blends of neighbouring rows, one per output phase. Both steps use the same
source positions and edge clamping as the 2-D interpolation, so values agree with it to float
rounding (~1e-7). Any other size falls back to interpolating the whole map once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

BAND_ELEMENTS = 1 << 22
"""Floats per band buffer (16 MB in float32): small enough to stay cache-friendly and reusable."""


def _rows(wide: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """Rows ``start .. start + count`` of ``wide [Q, r, W]``, indices clamped to its edges."""
    last = wide.shape[1] - 1
    if start >= 0 and start + count - 1 <= last:
        return wide.narrow(1, start, count)
    index = torch.arange(start, start + count, device=wide.device).clamp_(0, last)
    return wide.index_select(1, index)


def mask_prob_bands(
    mask_logits: torch.Tensor, size: tuple[int, int], band_elements: int = BAND_ELEMENTS
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(top, bottom, probs)`` covering rows ``0 .. H`` of ``sigmoid(upsample(mask_logits))``.

    Args:
        mask_logits: ``[Q, h, w]`` mask logits of one image.
        size: ``(H, W)``, the resolution of the probabilities.
        band_elements: about how many floats one band holds.

    Yields:
        ``top``, ``bottom`` and ``probs [Q, bottom - top, W]``, in order of rows. ``probs`` is a view
        of a buffer that the next step overwrites: reduce or copy it before advancing.
    """
    num_queries, h, w = mask_logits.shape
    height, width = size
    if num_queries == 0:
        return
    if height % h or width % w or height < h or width < w:
        probs = F.interpolate(mask_logits[None], size=size, mode="bilinear", align_corners=False)[0].sigmoid_()
        yield 0, height, probs
        return
    factor = height // h
    band = max(1, min(h, band_elements // (num_queries * factor * width)))
    buffer = mask_logits.new_empty((num_queries, band, factor, width))
    wide = mask_logits.new_empty((1, num_queries, band + 2, width))
    for first in range(0, h, band):
        count = min(band, h - first)
        low, high = max(first - 1, 0), min(first + count + 1, h)
        source = wide[:, :, : high - low]
        torch.ops.aten.upsample_bilinear2d.out(
            mask_logits[None, :, low:high], [high - low, width], False, None, None, out=source
        )
        source = source[0]
        offset = first - low
        here = source.narrow(1, offset, count)
        above, below = _rows(source, offset - 1, count), _rows(source, offset + 1, count)
        out = buffer[:, :count]
        for phase in range(factor):
            shift = (phase + 0.5) / factor - 0.5
            if shift < 0:
                torch.lerp(above, here, 1 + shift, out=out[:, :, phase])
            else:
                torch.lerp(here, below, shift, out=out[:, :, phase])
        yield first * factor, (first + count) * factor, out.view(num_queries, count * factor, width).sigmoid_()
