"""A loaded model and how one image goes through it.

A model is given as a path (any checkpoint :func:`mask2anomaly.load_model` reads: a mask
transformer) or as ``KIND:PATH`` for other model kinds (:data:`MODEL_KINDS`). The size the network
sees an image at is, in order of precedence: an explicit ``size`` or ``short_side``
(:class:`InputSize`), the model's own training input size when it has one (the Cityscapes ESPNetv2
checkpoints: 1024x512, the size their authors evaluate at), or the image's own size. The images are
resized with PIL's bilinear filter, as the authors' evaluation scripts do; maps come back to the
image's size through :meth:`Frame.to_original`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mask2anomaly.distributed import resolve_device
from mask2anomaly.errors import UserError
from mask2anomaly.methods import AnomalyMethod, ScoreContext
from mask2anomaly.models.espnetv2 import load_espnetv2
from mask2anomaly.models.loading import load_model
from mask2anomaly.models.mask_transformer import MaskTransformer

MODEL_KINDS: dict[str, Callable[[str, torch.device], torch.nn.Module]] = {"espnetv2": load_espnetv2}
"""Loaders of the models given as ``KIND:PATH`` (mask transformers are plain paths): per-pixel
classifiers that return logits ``[B, K, H, W]`` and provide ``preprocess``."""

MIN_SIDE, MAX_SIDE = 32, 8192
"""Bounds of an input side: smaller cannot go through the network, larger would not fit in memory."""


@dataclass(frozen=True)
class InputSize:
    """The size the network sees the images at, when not the model's own or the image's.

    Attributes:
        short_side: resize so that the shorter side has this many pixels (aspect kept).
        size: ``(H, W)`` to resize every image to.
        own: every image at its own size, even for a model trained at a fixed size.
    """

    short_side: int | None = None
    size: tuple[int, int] | None = None
    own: bool = False

    def __post_init__(self) -> None:
        if sum((self.short_side is not None, self.size is not None, self.own)) > 1:
            raise UserError("give either --short-side or --size, not both")
        if self.short_side is not None and not MIN_SIDE <= self.short_side <= MAX_SIDE:
            raise UserError(f"--short-side {self.short_side}: expected {MIN_SIDE}..{MAX_SIDE} pixels")
        if self.size is not None and not all(MIN_SIDE <= side <= MAX_SIDE for side in self.size):
            height, width = self.size
            raise UserError(f"--size {width}x{height}: each side must be {MIN_SIDE}..{MAX_SIDE} pixels")


def parse_input_size(text: str) -> tuple[int, int]:
    """``"WxH"`` (e.g. ``1024x512``) as ``(H, W)``."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise UserError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1024x512")
    return int(height), int(width)


@dataclass
class Frame:
    """A forward pass of one image and the geometry to bring its maps back to the image.

    Attributes:
        ctx: the outputs, at the (padded) network input size.
        network_size: ``(h, w)`` of the image as the network saw it (before padding).
        image_size: ``(H, W)`` of the original image.
    """

    ctx: ScoreContext
    network_size: tuple[int, int]
    image_size: tuple[int, int]

    def to_original(self, maps: torch.Tensor, nearest: bool = False) -> torch.Tensor:
        """Crop ``[B, h', w']`` maps to the image and resize them to its original size (bilinear, or
        nearest for labels)."""
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
        input_size: the network input size when not the model's own (see the module docstring).
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, input_size: InputSize = InputSize()) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.input_size = input_size
        self.is_mask_model = isinstance(model, MaskTransformer)
        config = getattr(model, "config", None)
        self.num_classes: int = config.num_classes
        self.class_names: tuple[str, ...] | None = getattr(config, "class_names", None)
        self.native_size: tuple[int, int] | None = getattr(config, "input_size", None)

    def check_methods(self, methods: Sequence[AnomalyMethod]) -> None:
        """Refuse methods that need query masks when the model is a per-pixel classifier, and
        methods whose settings belong to another model (Maskomaly's query indices)."""
        if not self.is_mask_model:
            bad = [m.name for m in methods if m.needs_masks]
            if bad:
                raise UserError(f"methods {', '.join(bad)} need a mask transformer; this model predicts per pixel")
        for method in methods:
            method.check_model(self.model.config)

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` the network sees an image of ``(height, width)`` at."""
        if self.input_size.size is not None:
            return self.input_size.size
        if self.input_size.short_side is not None:
            scale = self.input_size.short_side / min(height, width)
            return max(1, round(height * scale)), max(1, round(width * scale))
        if self.native_size is not None and not self.input_size.own:
            return self.native_size
        return height, width

    def describe_size(self) -> str:
        """How images are sized for the network, in words."""
        if self.input_size.size is not None:
            return f"resized to {self.input_size.size[1]}x{self.input_size.size[0]}"
        if self.input_size.short_side is not None:
            return f"resized to short side {self.input_size.short_side}"
        if self.native_size is not None and not self.input_size.own:
            return f"resized to {self.native_size[1]}x{self.native_size[0]}, the model's training size"
        return "at their own size"

    @torch.inference_mode()
    def context(self, image: np.ndarray, flip: bool) -> Frame:
        """Run the model on one ``(H, W, 3)`` uint8 RGB image (and its mirror image when ``flip``)."""
        height, width = image.shape[:2]
        h, w = self.network_size(height, width)
        if (h, w) != (height, width):
            image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
        pixel_values, sizes = self.model.preprocess([image])
        pixel_values = pixel_values.to(self.device)
        size = (pixel_values.shape[-2], pixel_values.shape[-1])
        if self.is_mask_model:
            output = self.model(pixel_values)
            flipped = self.model(pixel_values.flip(-1)) if flip else None
            ctx = ScoreContext.from_masks(output, size, flipped)
        else:
            dense = getattr(self.model, "forward_dense", None)
            logits, dataset = dense(pixel_values) if dense is not None else (self.model(pixel_values), None)
            flipped = self.model(pixel_values.flip(-1)) if flip else None
            ctx = ScoreContext.from_logits(logits, size, flipped, dataset)
        return Frame(ctx, sizes[0], (height, width))


def open_model(
    spec: str | Path, device: str | torch.device | None = None, input_size: InputSize = InputSize()
) -> Predictor:
    """Load ``spec`` (a checkpoint path, or ``KIND:PATH`` with KIND in :data:`MODEL_KINDS`) on
    ``device`` (default: CUDA when available)."""
    text = str(spec)
    kind, sep, path = text.partition(":")
    chosen = resolve_device(device)
    if sep and kind in MODEL_KINDS:
        return Predictor(MODEL_KINDS[kind](path, chosen), chosen, input_size)
    if sep and not Path(text).exists() and len(kind) > 1:
        raise UserError(f"unknown model kind {kind!r} in {text!r}; kinds: {', '.join(sorted(MODEL_KINDS)) or 'none'}")
    return Predictor(load_model(text, chosen), chosen, input_size)
