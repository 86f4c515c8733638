"""Turning RGB images into the model's input, exactly as Hugging Face's Mask2Former image processor
does without resizing: scale to [0, 1], normalise with the ImageNet mean and standard deviation,
pad bottom and right with zeros to a common size divisible by 32.

Detectron2's Mask2Former normalises 0..255 pixels with mean (123.675, 116.28, 103.53) and std
(58.395, 57.12, 57.375), which is the same transform, so both kinds of checkpoints take this input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mask2anomaly.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE_DIVISOR = 32


def padded_size(height: int, width: int, divisor: int = SIZE_DIVISOR) -> tuple[int, int]:
    """Smallest size ``>= (height, width)`` whose sides are multiples of ``divisor``."""
    return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def normalize_images(
    images: Sequence[np.ndarray | torch.Tensor], divisor: int = SIZE_DIVISOR, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Normalise and pad a list of ``[H_i, W_i, 3]`` uint8 RGB images.

    Returns:
        ``pixel_values [B, 3, H, W]`` float32 with H, W the largest sizes rounded up to ``divisor``,
        and the original ``(H_i, W_i)`` of each image (to crop predictions back).
    """
    if len(images) == 0:
        raise UserError("preprocess: no images given")
    sizes = []
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3:
            raise UserError(f"preprocess: image {i} has shape {tuple(image.shape)}, expected (H, W, 3) RGB")
        if image.dtype not in (np.uint8, torch.uint8):
            raise UserError(f"preprocess: image {i} has dtype {image.dtype}, expected uint8")
        sizes.append((int(image.shape[0]), int(image.shape[1])))
    height, width = padded_size(max(h for h, _ in sizes), max(w for _, w in sizes), divisor)
    batch = torch.zeros(len(images), 3, height, width, dtype=torch.float32, device=device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1)
    for i, image in enumerate(images):
        if isinstance(image, np.ndarray) and not (image.flags.writeable and image.flags.c_contiguous):
            image = np.array(image)
        pixels = torch.as_tensor(image, device=device).permute(2, 0, 1).float()
        h, w = sizes[i]
        batch[i, :, :h, :w] = (pixels * (1 / 255) - mean) / std
    return batch, sizes
