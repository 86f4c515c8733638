"""Model outputs computed without the library's scoring code: the semantic marginal of a mask
transformer from its raw forward pass, with plain tensor algebra."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def marginal(model: torch.nn.Module, image: np.ndarray) -> torch.Tensor:
    """``[K, H, W]`` ``softmax(C)[:, :K]^T sigmoid(M)`` of an image whose sides are multiples of 32
    (no padding, no resizing), mask logits upsampled bilinearly."""
    pixels = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - MEAN) / STD
    with torch.no_grad():
        out = model(pixels[None])
    probs = out.class_logits[0].softmax(-1)[:, :-1]
    masks = F.interpolate(out.mask_logits, size=image.shape[:2], mode="bilinear")[0].sigmoid()
    return torch.einsum("qk,qhw->khw", probs, masks)


def scores(model: torch.nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
    """The Mask2Anomaly score (paper Eq. 5) and MSP of the marginal normalised over the classes."""
    f = marginal(model, image)
    normalised = f / f.sum(0, keepdim=True)
    return {"mask2anomaly": (1 - f.max(0).values).numpy(), "msp": (1 - normalised.max(0).values).numpy()}
