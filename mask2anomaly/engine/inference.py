"""Scoring one image with a loaded model and several methods from one forward pass.

A model is given as a path (any checkpoint :func:`mask2anomaly.load_model` reads: a mask
transformer) or as ``KIND:PATH`` for other model kinds (:data:`MODEL_KINDS`). By default the model
sees the image at its own resolution (padded to the size divisibility); ``short_side`` resizes it
first (the official Cityscapes setting is 1024) and the scores are resized back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mask2anomaly.errors import UserError
from mask2anomaly.methods import AnomalyMethod, ScoreContext, score_methods
from mask2anomaly.models.espnetv2 import load_espnetv2
from mask2anomaly.models.loading import load_model
from mask2anomaly.models.mask_transformer import MaskTransformer

MODEL_KINDS: dict[str, Callable[[str, torch.device], torch.nn.Module]] = {"espnetv2": load_espnetv2}
"""Loaders of the models given as ``KIND:PATH`` (mask transformers are plain paths): per-pixel
classifiers that return logits ``[B, K, H, W]`` and provide ``preprocess``."""


@dataclass
class Prediction:
    """Per-pixel outputs of one image at its original resolution.

    Attributes:
        scores: method name -> ``(H, W)`` float32 anomaly scores, higher = more anomalous.
        semantic: ``(H, W)`` int64 closed-set class of each pixel (argmax of the class scores).
    """

    scores: dict[str, np.ndarray]
    semantic: np.ndarray


@dataclass
class Frame:
    """A forward pass of one image and the geometry to bring its maps back to the image.

    Attributes:
        ctx: the outputs, at the padded network input size.
        network_size: ``(h, w)`` of the image as the network saw it (before padding).
        image_size: ``(H, W)`` of the original image.
    """

    ctx: ScoreContext
    network_size: tuple[int, int]
    image_size: tuple[int, int]

    def to_original(self, maps: torch.Tensor, nearest: bool = False) -> torch.Tensor:
        """Crop ``[B, H', W']`` maps to the image and resize them to its original size."""
        h, w = self.network_size
        maps = maps[:, :h, :w]
        if (h, w) != self.image_size:
            mode = "nearest" if nearest else "bilinear"
            resized = F.interpolate(maps[:, None].float(), size=self.image_size, mode=mode)[:, 0]
            maps = resized.to(maps.dtype) if nearest else resized
        return maps


class Predictor:
    """A model in eval mode with the knowledge of how to feed it and read its output.

    Args:
        model: a mask transformer (returns :class:`MaskTransformerOutput`) or a per-pixel classifier
            (returns logits ``[B, K, H, W]``); both provide ``preprocess``.
        device: where inference runs.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.is_mask_model = isinstance(model, MaskTransformer)
        config = getattr(model, "config", None)
        self.num_classes: int = config.num_classes
        self.class_names: tuple[str, ...] | None = getattr(config, "class_names", None)

    def check_methods(self, methods: Sequence[AnomalyMethod]) -> None:
        """Refuse methods that need query masks when the model is a per-pixel classifier."""
        if not self.is_mask_model:
            bad = [m.name for m in methods if m.needs_masks]
            if bad:
                raise UserError(f"methods {', '.join(bad)} need a mask transformer; this model predicts per pixel")

    def _context(self, pixel_values: torch.Tensor, flip: bool) -> ScoreContext:
        size = (pixel_values.shape[-2], pixel_values.shape[-1])
        output = self.model(pixel_values)
        flipped = self.model(pixel_values.flip(-1)) if flip else None
        if self.is_mask_model:
            return ScoreContext.from_masks(output, size, flipped)
        return ScoreContext.from_logits(output, size, flipped)

    @torch.inference_mode()
    def context(self, image: np.ndarray, flip: bool, short_side: int | None = None) -> Frame:
        """Run the model on one ``(H, W, 3)`` uint8 RGB image (and its mirror image when ``flip``)."""
        height, width = image.shape[:2]
        if short_side:
            scale = short_side / min(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        pixel_values, sizes = self.model.preprocess([image])
        return Frame(self._context(pixel_values.to(self.device), flip), sizes[0], (height, width))

    @torch.inference_mode()
    def predict(self, image: np.ndarray, methods: Sequence[AnomalyMethod], short_side: int | None = None) -> Prediction:
        """Scores of every method and the closed-set prediction for one ``(H, W, 3)`` uint8 RGB image."""
        frame = self.context(image, any(m.needs_flip for m in methods), short_side)
        scores = score_methods(frame.ctx, methods, closed_set=True)
        maps = {name: frame.to_original(s.float())[0].cpu().numpy() for name, s in scores.items()}
        semantic = frame.to_original(frame.ctx.class_argmax, nearest=True)[0].cpu().numpy()
        return Prediction(maps, semantic)


def open_model(spec: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """Load ``spec`` (a checkpoint path, or ``KIND:PATH`` with KIND in :data:`MODEL_KINDS`)."""
    text = str(spec)
    kind, sep, path = text.partition(":")
    device = torch.device(device)
    if sep and kind in MODEL_KINDS:
        return Predictor(MODEL_KINDS[kind](path, device), device)
    if sep and not Path(text).exists() and len(kind) > 1:
        raise UserError(f"unknown model kind {kind!r} in {text!r}; kinds: {', '.join(sorted(MODEL_KINDS)) or 'none'}")
    return Predictor(load_model(text, device), device)
