"""A mask transformer whose outputs the test writes: its queries follow the image's colours.

Images are painted in a few flat colours; each query's mask is on exactly where the image has its
colour (mask logits +/-8 at stride 4, from the block's share of that colour), and each query has a
fixed class distribution. With such a model every consumer's answer can be computed by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mask2anomaly.data.base import UNKNOWN, UNKNOWN_CATEGORY, Item, Reader, Sample, segments_from_ids
from mask2anomaly.models import MaskTransformer, MaskTransformerOutput
from mask2anomaly.models.preprocess import IMAGENET_MEAN, IMAGENET_STD
from tests.models.tiny import tiny_config

K = 19
GREY, GREEN, RED, BLUE = (128, 128, 128), (0, 160, 0), (230, 20, 20), (20, 20, 230)
COLOURS = (GREY, GREEN, RED, BLUE)
"""Query q's mask is where the image has ``COLOURS[q]``; a fifth query is never on."""


def class_logits() -> torch.Tensor:
    """``[5, K + 1]``: road (0) confident, vegetation (8) confident, red: unsure between every known
    class, blue: car (13) fairly sure, the last query "no object"."""
    logits = torch.full((5, K + 1), -6.0)
    logits[0, 0] = 6.0
    logits[1, 8] = 6.0
    logits[2, :K] = 0.0
    logits[3, 13] = 2.0
    logits[3, :13] = 0.0
    logits[4, K] = 8.0
    return logits


class ScriptedMaskModel(MaskTransformer):
    """A tiny mask transformer (19 classes, 5 queries) whose forward pass is :func:`class_logits` and
    masks read off the image's colours."""

    def __init__(self) -> None:
        super().__init__(tiny_config("masked", num_classes=K, num_queries=5), load_pretrained=False)

    def forward(self, pixel_values: torch.Tensor, return_aux: bool | None = None) -> MaskTransformerOutput:
        mean = torch.tensor(IMAGENET_MEAN, device=pixel_values.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=pixel_values.device).view(1, 3, 1, 1)
        rgb = (pixel_values * std + mean) * 255
        shares = []
        for colour in COLOURS:
            target = torch.tensor(colour, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
            shares.append(((rgb - target).abs().amax(1) < 8).float())
        shares.append(torch.zeros_like(shares[0]))
        on = F.avg_pool2d(torch.stack(shares, 1), 4)
        masks = 16.0 * (on - 0.5)
        logits = class_logits().to(pixel_values.device).expand(pixel_values.shape[0], -1, -1)
        return MaskTransformerOutput(logits.clone(), masks)


def painted(height: int, width: int, boxes: list[tuple[tuple[int, int, int], tuple[int, int, int, int]]]) -> np.ndarray:
    """A grey image with ``(colour, (top, left, bottom, right))`` boxes painted in order."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = GREY
    for colour, (top, left, bottom, right) in boxes:
        image[top:bottom, left:right] = colour
    return image


SEMANTIC = {GREY: 0, GREEN: 8, BLUE: 13, RED: UNKNOWN}
"""The ground truth of the painted colours: road, vegetation, car (a thing), an unknown object."""


class PaintedReader(Reader):
    """Painted scenes with every label: semantic (red = unknown), anomaly (red = 1), and panoptic
    segments (grey and green stuff; each blue box a car, each red box an unknown thing).

    Args:
        scenes: per image, the ``(colour, box)`` list of :func:`painted`.
        size: ``(H, W)`` of the images.
    """

    def __init__(self, scenes, size=(64, 128)):
        super().__init__("painted")
        self.scenes, self.size = scenes, size
        self.items = [Item(f"scene{i}", Path(f"scene{i}.png")) for i in range(len(scenes))]

    def load(self, item: Item) -> Sample:
        boxes = self.scenes[int(item.name.removeprefix("scene"))]
        image = painted(*self.size, boxes)
        semantic = np.zeros(self.size, np.uint8)
        instances = np.ones(self.size, np.int32)
        info = {1: (0, False, False)}
        for n, (colour, (top, left, bottom, right)) in enumerate(boxes, start=2):
            semantic[top:bottom, left:right] = SEMANTIC[colour]
            if colour == GREEN:
                instances[top:bottom, left:right] = 1000
                info[1000] = (8, False, False)
            else:
                instances[top:bottom, left:right] = n
                info[n] = (UNKNOWN_CATEGORY if colour == RED else 13, True, False)
        anomaly = (semantic == UNKNOWN).astype(np.uint8)
        segments = segments_from_ids(instances, info)
        return Sample(item.name, image, semantic, anomaly, instances, segments)
