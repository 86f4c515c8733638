"""ESPNetv2: a light Cityscapes-trained per-pixel semantic segmentation network.

The architecture is the one of "ESPNetv2: A Light-weight, Power Efficient, and General Purpose
Convolutional Neural Network" (Mehta et al., CVPR 2019), written here so that the state dicts
published with the authors' EdgeNets repository (MIT licence; e.g. ``espnetv2_s_2.0_city_1024x512.pth``)
load with every key used. Submodule names follow those files, not this project's style.

Network, in short:

- **Encoder** (``base_net``): a strided 3x3 conv (stride 2), then three down-sampling blocks
  (strides 4, 8, 16) each followed by a stack of EESP blocks. An EESP block reduces the channels
  with a grouped 1x1 conv, runs ``k = 4`` depth-wise 3x3 convs of growing dilation in parallel,
  adds each branch to the previous one (hierarchical fusion, against gridding), concatenates,
  and merges with a grouped 1x1 conv plus a residual. A down-sampling block concatenates an
  average-pooled copy of its input with a stride-2 EESP output and adds a projection of the
  input image average-pooled to the same size ("input reinforcement").
- **Decoder**: at strides 16, 8, 4 and 2 an efficient pyramid pooling block (project to few
  channels, one depth-wise conv at scales 2, 1.5, 1, 0.5, 0.1 of the feature map, channel shuffle,
  grouped merge) refines the features; between them the features are upsampled x2 (bilinear,
  ``align_corners=True``) and added to a sigmoid-gated projection of the encoder feature at that
  stride. The last block outputs the class logits at stride 2, upsampled bilinearly
  (``align_corners=True``) to the input size.

Cityscapes checkpoints predict **20** channels: the 19 trainIds and a "background" channel 19
that the training labels never use (void is 255, ignored by the cross-entropy), so it only ever
learned to be low: on the fixture frame it wins no pixel. The authors' test script maps an argmax
of 19 to unlabeled. :meth:`ESPNetV2Segmentation.forward` returns
the 19 Cityscapes logits by default (``include_background=True`` gives all 20).

Input normalisation (the authors' ``Normalize`` transform, used both in training and in their test
script): RGB scaled to [0, 1], then ImageNet mean ``(0.485, 0.456, 0.406)`` and std
``(0.229, 0.224, 0.225)``. The published Cityscapes numbers are for images resized (PIL bilinear)
to 1024x512; the authors' Cityscapes loader trains on 1024x512 crops of the 2048x1024 frames
randomly rescaled by 0.5-2 (its defaults), so full-resolution frames are in range too.

Cost on CPU (``bench/espnetv2.py``, one thread): s=2.0 takes 0.42 s for 1024x512 and 3.0 s for
2048x1024; a 2048x1024 forward without gradients peaks at about 1.05 GB of process RSS (0.78 GB over
the loaded model). :func:`predict_logits` can cap the working resolution with ``max_pixels``.

Usage::

    model = load_espnetv2("espnetv2_s_2.0_city_1024x512.pth")
    logits = predict_logits(model, image)  # (19, H, W) float32, image (H, W, 3) uint8 RGB
"""

from __future__ import annotations

import json
import math
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from mask2anomaly.config_utils import from_dict, to_dict
from mask2anomaly.errors import CheckpointError, UserError
from mask2anomaly.io_utils import atomic_path
from mask2anomaly.models.dataset_head import DatasetPosteriorHead
from mask2anomaly.models.formats.native import load_safetensors
from mask2anomaly.models.formats.state_dict import as_tensors, load_strict, read_torch_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean (of [0, 1] values) subtracted by :meth:`ESPNetV2Segmentation.preprocess`."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB std dividing the centred values."""

ENCODER_CHANNELS: dict[float, tuple[int, int, int, int]] = {
    0.5: (16, 32, 64, 128),
    1.0: (32, 64, 128, 256),
    1.25: (32, 80, 160, 320),
    1.5: (32, 96, 192, 384),
    2.0: (32, 128, 256, 512),
}
"""Output channels of the encoder at strides 2, 4, 8, 16 for each width scale ``s``."""

TRAINED_SIZE = (512, 1024)
"""``(H, W)`` at which the published Cityscapes checkpoints were trained and evaluated."""

_BRANCHES = 4  # parallel dilated branches of every EESP block
_RECEPTIVE_LIMITS = (13, 11, 9, 7)  # largest effective kernel of the EESP blocks, per stage
_EESP_REPEATS = (3, 7)  # EESP blocks after the stride-8 and stride-16 down-sampling
_PYRAMID_SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)
_PYRAMID_MIN_SIZE = 5
_REINFORCE_CHANNELS = 3  # width of the input-reinforcement branch (the RGB image)


@dataclass(frozen=True)
class ESPNetV2Config:
    """Shape of an ESPNetv2 segmentation network.

    Attributes:
        scale: Width multiplier ``s`` of the encoder, a key of :data:`ENCODER_CHANNELS`.
        num_classes: Classes returned by ``forward`` (19 Cityscapes trainIds).
        background_channel: Whether the network has one more output channel after the classes
            (the Cityscapes checkpoints' untrained "background"), dropped by ``forward``.
        decoder_width: Base decoder width; the decoder stages have 4x, 3x and 2x this many channels.
        input_size: ``(H, W)`` the network was trained and is evaluated at (the Cityscapes
            checkpoints: :data:`TRAINED_SIZE`), which inference resizes images to by default;
            ``None`` runs it at each image's own size.
        dataset_head: DenseHybrid's dataset-posterior head on the last decoder features (stride 2,
            ``2 * decoder_width`` channels), read by :meth:`ESPNetV2Segmentation.forward_dense`.
    """

    scale: float = 2.0
    num_classes: int = 19
    background_channel: bool = True
    decoder_width: int = 16
    input_size: tuple[int, int] | None = None
    dataset_head: bool = False

    def __post_init__(self) -> None:
        if self.scale not in ENCODER_CHANNELS:
            raise UserError(f"ESPNetv2 scale {self.scale} not supported; valid: {sorted(ENCODER_CHANNELS)}")
        if self.num_classes < 1 or self.decoder_width < 1:
            raise UserError("ESPNetv2 num_classes and decoder_width must be positive")

    @property
    def encoder_channels(self) -> tuple[int, int, int, int]:
        """Encoder channels at strides 2, 4, 8, 16."""
        return ENCODER_CHANNELS[self.scale]

    @property
    def out_channels(self) -> int:
        """Channels of the last decoder layer (classes plus the optional background)."""
        return self.num_classes + int(self.background_channel)


# ----------------------------------------------------------------------------------------------
# Encoder building blocks (attribute names as in the published state dicts)


class _ConvNorm(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional PReLU, as ``conv`` / ``bn`` / ``act``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.PReLU(cout) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.act is None else self.act(x)


class _NormAct(nn.Module):
    """BatchNorm -> PReLU, as ``bn`` / ``act``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class _DepthwiseDilated(nn.Module):
    """A depth-wise 3x3 conv with dilation (padding keeps the size at stride 1), as ``conv``."""

    def __init__(self, channels: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            channels, channels, 3, stride, padding=dilation, dilation=dilation, groups=channels, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _branch_dilations(branches: int, receptive_limit: int) -> list[int]:
    """Dilations of the depth-wise branches: effective kernels 3, 5, 7, ... capped at the limit
    (a kernel past it falls back to 3), in ascending order."""
    kernels = sorted(k if k <= receptive_limit else 3 for k in (3 + 2 * i for i in range(branches)))
    return [(k - 1) // 2 for k in kernels]


class _EESP(nn.Module):
    """Extremely efficient spatial pyramid block: reduce, split into dilated depth-wise branches,
    fuse them hierarchically, merge with a grouped 1x1 conv (+ residual when shapes allow)."""

    def __init__(self, cin: int, cout: int, stride: int, receptive_limit: int, downsample: bool = False) -> None:
        super().__init__()
        if cout % _BRANCHES:
            raise UserError(f"EESP output channels {cout} not divisible by {_BRANCHES} branches")
        width = cout // _BRANCHES
        self.downsample = downsample
        self.proj_1x1 = _ConvNorm(cin, width, 1, groups=_BRANCHES)
        self.spp_dw = nn.ModuleList(
            _DepthwiseDilated(width, stride, d) for d in _branch_dilations(_BRANCHES, receptive_limit)
        )
        self.conv_1x1_exp = _ConvNorm(cout, cout, 1, groups=_BRANCHES, act=False)
        self.br_after_cat = _NormAct(cout)
        self.module_act = nn.PReLU(cout)  # unused by down-sampling blocks, but stored in their weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)
        fused = [self.spp_dw[0](reduced)]
        for branch in self.spp_dw[1:]:
            fused.append(branch(reduced) + fused[-1])
        out = self.conv_1x1_exp(self.br_after_cat(torch.cat(fused, 1)))
        del fused, reduced
        if self.downsample:
            return out  # the down-sampling block adds its own branches and activation
        if out.shape == x.shape:
            out = out + x
        return self.module_act(out)


class _DownSampler(nn.Module):
    """Stride-2 block: [avg-pooled input, stride-2 EESP] concatenated, plus a projection of the
    input image pooled to the same size, then PReLU."""

    def __init__(self, cin: int, cout: int, receptive_limit: int) -> None:
        super().__init__()
        self.eesp = _EESP(cin, cout - cin, 2, receptive_limit, downsample=True)
        self.inp_reinf = nn.Sequential(
            _ConvNorm(_REINFORCE_CHANNELS, _REINFORCE_CHANNELS, 3),
            _ConvNorm(_REINFORCE_CHANNELS, cout, 1, act=False),
        )
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        out = torch.cat([_avg_pool(x), self.eesp(x)], 1)
        return self.act(out + self.inp_reinf(image))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pooling with stride 2 and padding 1 (zeros counted), halving sizes (ceil)."""
    return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1)


class _Encoder(nn.Module):
    """The ESPNetv2 encoder without its ImageNet stride-32 stage and classifier."""

    def __init__(self, channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        lim = _RECEPTIVE_LIMITS
        self.level1 = _ConvNorm(3, c1, 3, stride=2)
        self.level2_0 = _DownSampler(c1, c2, lim[0])
        self.level3_0 = _DownSampler(c2, c3, lim[1])
        self.level3 = nn.ModuleList(_EESP(c3, c3, 1, lim[2]) for _ in range(_EESP_REPEATS[0]))
        self.level4_0 = _DownSampler(c3, c4, lim[2])
        self.level4 = nn.ModuleList(_EESP(c4, c4, 1, lim[3]) for _ in range(_EESP_REPEATS[1]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features at strides 2, 4, 8 and 16."""
        f2 = self.level1(x)
        image = _avg_pool(_avg_pool(x))  # the input at stride 4, then 8 and 16 (same pooling as the features)
        f4 = self.level2_0(f2, image)
        image = _avg_pool(image)
        f8 = self.level3_0(f4, image)
        for block in self.level3:
            f8 = block(f8)
        image = _avg_pool(image)
        f16 = self.level4_0(f8, image)
        for block in self.level4:
            f16 = block(f16)
        return f2, f4, f8, f16


# ----------------------------------------------------------------------------------------------
# Decoder building blocks (the published weights store these as nn.Sequential indices)


class _SeqConvNormAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> PReLU stored as ``cbr.0`` / ``cbr.1`` / ``cbr.2``."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr(x)


class _SeqNormAct(nn.Module):
    """BatchNorm -> PReLU stored as ``br.0`` / ``br.1``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.br(x)


class _ChannelShuffle(nn.Module):
    """Interleave ``groups`` equal channel groups (group-major -> channel-major order)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class _PyramidPool(nn.Module):
    """Efficient pyramid pooling: project to few channels, one depth-wise 3x3 conv per scale of the
    feature map (2, 1.5, 1, 0.5, 0.1; at least 5 pixels), back to the feature size, then a shuffled
    grouped merge to ``cout`` channels (with BatchNorm + PReLU unless ``last``)."""

    def __init__(self, cin: int, width: int, cout: int, last: bool = False) -> None:
        super().__init__()
        n = len(_PYRAMID_SCALES)
        self.projection_layer = _SeqConvNormAct(cin, width, 1)
        self.stages = nn.ModuleList(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False) for _ in _PYRAMID_SCALES
        )
        self.merge_layer = nn.Sequential(
            _SeqNormAct(width * n),
            _ChannelShuffle(n),
            _SeqConvNormAct(width * n, width, 3, groups=width),
            nn.Conv2d(width, cout, 1, bias=last),
        )
        self.br = None if last else _SeqNormAct(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection_layer(x)
        h, w = x.shape[-2:]
        outs = []
        for scale, conv in zip(_PYRAMID_SCALES, self.stages, strict=True):
            size = (max(math.ceil(h * scale), _PYRAMID_MIN_SIZE), max(math.ceil(w * scale), _PYRAMID_MIN_SIZE))
            if scale > 1.0:
                y = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
                y = F.adaptive_avg_pool2d(conv(y), (h, w))
            elif scale < 1.0:
                y = conv(F.adaptive_avg_pool2d(x, size))
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=True)
            else:
                y = conv(x)
            outs.append(y)
        out = self.merge_layer(torch.cat(outs, 1))
        return out if self.br is None else self.br(out)


class _GatedProjection(nn.Module):
    """Grouped 3x3 projection of an encoder feature, scaled per channel by a sigmoid gate computed
    from its global average (the decoder's skip connection)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.wt_layer = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.Sigmoid())
        self.expansion_layer = _SeqConvNormAct(cin, cout, 3, groups=math.gcd(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expansion_layer(x) * self.wt_layer(x)


def _upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


# ----------------------------------------------------------------------------------------------


class ESPNetV2Segmentation(nn.Module):
    """ESPNetv2 semantic segmentation: ``forward(pixel_values) -> logits`` at the input size.

    Args:
        config: Network shape; the default is the s=2.0 Cityscapes network.

    Example:
        >>> model = ESPNetV2Segmentation(ESPNetV2Config(scale=1.0)).eval()
        >>> x, sizes = model.preprocess([np.zeros((64, 128, 3), np.uint8)])
        >>> model(x).shape, sizes
        (torch.Size([1, 19, 64, 128]), [(64, 128)])
    """

    def __init__(self, config: ESPNetV2Config | None = None) -> None:
        super().__init__()
        self.config = config = config or ESPNetV2Config()
        c1, c2, c3, c4 = config.encoder_channels
        d = config.decoder_width
        planes = (4 * d, 3 * d, 2 * d)
        width = min(config.out_channels // 2, d)
        self.base_net = _Encoder(config.encoder_channels)
        self.bu_dec_l1 = _PyramidPool(c4, width, planes[0])
        self.bu_dec_l2 = _PyramidPool(planes[0], width, planes[1])
        self.bu_dec_l3 = _PyramidPool(planes[1], width, planes[2])
        self.bu_dec_l4 = _PyramidPool(planes[2], width, config.out_channels, last=True)
        self.merge_enc_dec_l2 = _GatedProjection(c3, planes[0])
        self.merge_enc_dec_l3 = _GatedProjection(c2, planes[1])
        self.merge_enc_dec_l4 = _GatedProjection(c1, planes[2])
        self.bu_br_l2 = nn.Sequential(nn.BatchNorm2d(planes[0]), nn.PReLU(planes[0]))
        self.bu_br_l3 = nn.Sequential(nn.BatchNorm2d(planes[1]), nn.PReLU(planes[1]))
        self.bu_br_l4 = nn.Sequential(nn.BatchNorm2d(planes[2]), nn.PReLU(planes[2]))
        self.dataset_head = DatasetPosteriorHead(planes[2]) if config.dataset_head else None
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixel_values: torch.Tensor, include_background: bool = False) -> torch.Tensor:
        """Class logits ``(B, K, H, W)`` of normalised images ``(B, 3, H, W)`` (see :meth:`preprocess`).

        ``K`` is ``config.num_classes``, or ``config.out_channels`` with ``include_background``.
        """
        return self.forward_dense(pixel_values, include_background)[0]

    def forward_dense(
        self, pixel_values: torch.Tensor, include_background: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits as :meth:`forward`, and DenseHybrid's dataset-posterior logits ``(B, 2, H, W)``
        (``None`` without the head), both upsampled to the input size."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise UserError(f"ESPNetv2 expects pixel values (B, 3, H, W), got {tuple(pixel_values.shape)}")
        size = pixel_values.shape[-2:]
        f2, f4, f8, f16 = self.base_net(pixel_values)
        x = self.bu_dec_l1(f16)
        del f16
        x = self.bu_dec_l2(self.bu_br_l2(_upsample_to(x, f8.shape[-2:]) + self.merge_enc_dec_l2(f8)))
        del f8
        x = self.bu_dec_l3(self.bu_br_l3(_upsample_to(x, f4.shape[-2:]) + self.merge_enc_dec_l3(f4)))
        del f4
        features = self.bu_br_l4(_upsample_to(x, f2.shape[-2:]) + self.merge_enc_dec_l4(f2))
        del f2
        x = self.bu_dec_l4(features)
        if not include_background:
            x = x[:, : self.config.num_classes]
        dataset = None if self.dataset_head is None else _upsample_to(self.dataset_head(features), size)
        return _upsample_to(x, size), dataset

    def preprocess(
        self, images: Sequence[np.ndarray], size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Batch ``(H, W, 3)`` uint8 RGB images as the authors trained: ``/255``, then ImageNet
        mean/std per channel.

        Args:
            images: The images; without ``size`` they must all have the same shape.
            size: ``(H, W)`` to resize every image to first (PIL bilinear, as the authors'
                evaluation), e.g. :data:`TRAINED_SIZE`.

        Returns:
            ``(pixel_values (B, 3, H, W) float32 on the model's device, original (H, W) sizes)``.
        """
        if len(images) == 0:
            raise UserError("ESPNetv2 preprocess: no images")
        arrays, sizes = [], []
        for i, image in enumerate(images):
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise UserError(f"image {i}: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
            sizes.append((int(image.shape[0]), int(image.shape[1])))
            if size is not None and tuple(image.shape[:2]) != tuple(size):
                image = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
            arrays.append(image)
        if len({a.shape for a in arrays}) > 1:
            raise UserError("ESPNetv2 preprocess: images of different sizes; pass size=(H, W) to resize them")
        batch = torch.from_numpy(np.stack(arrays)).to(self.pixel_mean.device)
        batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
        return (batch - self.pixel_mean) / self.pixel_std, sizes


def working_size(size: tuple[int, int], max_pixels: int | None) -> tuple[int, int]:
    """``size`` ``(H, W)`` scaled down (aspect kept) to at most ``max_pixels`` pixels, or unchanged."""
    h, w = size
    if max_pixels is None or h * w <= max_pixels:
        return h, w
    factor = math.sqrt(max_pixels / (h * w))
    return max(1, int(h * factor)), max(1, int(w * factor))


@torch.no_grad()
def predict_logits(
    model: ESPNetV2Segmentation,
    image: np.ndarray,
    size: tuple[int, int] | None = None,
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Logits ``(K, H, W)`` float32 (CPU) of one ``(H, W, 3)`` uint8 RGB image at its own size.

    Args:
        model: The network (put in eval mode by the caller or the loader).
        image: The image.
        size: ``(H, W)`` to run the network at (e.g. :data:`TRAINED_SIZE`); logits are upsampled
            back bilinearly. Default: the image's own size.
        max_pixels: Without ``size``, run at the image size scaled down to at most this many
            pixels (bounds memory: a 2048x1024 frame costs about 1 GB at s=2.0).
    """
    h, w = image.shape[:2]
    run = size if size is not None else working_size((h, w), max_pixels)
    pixel_values, _ = model.preprocess([image], size=None if tuple(run) == (h, w) else run)
    logits = model(pixel_values)
    if tuple(logits.shape[-2:]) != (h, w):
        logits = _upsample_to(logits, (h, w))
    return logits[0].float().cpu()


def msp_anomaly_score(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel anomaly score ``1 - max softmax`` of ``(..., K, H, W)`` logits."""
    return 1.0 - torch.softmax(logits.float(), dim=-3).amax(dim=-3)


# ----------------------------------------------------------------------------------------------
# Loading


_PROBE_KEYS = (
    "base_net.level1.conv.weight",
    "base_net.level2_0.act.weight",
    "base_net.level3_0.act.weight",
    "base_net.level4_0.act.weight",
    "bu_dec_l1.merge_layer.3.weight",
    "bu_dec_l4.merge_layer.3.weight",
)


def config_from_state_dict(state: Mapping[str, torch.Tensor], source: str = "state dict") -> ESPNetV2Config:
    """The :class:`ESPNetV2Config` whose parameter shapes ``state`` has.

    The scale is read from the encoder widths; a 20-channel head is taken as the Cityscapes layout
    (19 classes + background, trained at :data:`TRAINED_SIZE`), any other width as that many classes
    without background.

    Raises:
        CheckpointError: ``state`` is not an ESPNetv2 segmentation state dict.
    """
    missing = [k for k in _PROBE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{source}: not an ESPNetv2 segmentation state dict (no {missing[0]!r})")
    channels = tuple(int(state[k].shape[0]) for k in _PROBE_KEYS[:4])
    scales = [s for s, c in ENCODER_CHANNELS.items() if c == channels]
    if not scales:
        raise CheckpointError(f"{source}: ESPNetv2 encoder widths {channels} match no known scale")
    out_channels = int(state["bu_dec_l4.merge_layer.3.weight"].shape[0])
    decoder_width = int(state["bu_dec_l1.merge_layer.3.weight"].shape[0]) // 4
    head = any(k.startswith("dataset_head.") for k in state)
    if out_channels == 20:
        return ESPNetV2Config(scales[0], 19, True, decoder_width, TRAINED_SIZE, head)
    return ESPNetV2Config(scales[0], out_channels, False, decoder_width, dataset_head=head)


def _read_checkpoint(path: Path) -> object:
    """Unpickle ``path`` with ``weights_only=True``: zip archives via the project reader, and the
    legacy (pre-1.6, non-zip) ``torch.save`` format of the published EdgeNets files."""
    if zipfile.is_zipfile(path):
        return read_torch_file(path)
    with open(path, "rb") as f:
        if f.read(1) != b"\x80":  # a legacy torch.save file starts with a pickle (protocol >= 2)
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (neither a torch.save archive nor pickle)"
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f"it needs {found.group(1)}" if found else "it contains objects other than tensors"
        raise CheckpointError(
            f"{path}: refused to unpickle (only weights_only=True pickles are loaded): {what}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None


ESPNETV2_CONFIG_KEY = "mask2anomaly.espnetv2"
"""Metadata key of the :class:`ESPNetV2Config` in the safetensors files this package writes."""


def save_espnetv2(model: ESPNetV2Segmentation, path: str | Path, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``model`` (plus ``extra`` tensors, e.g. a training checkpoint's optimiser state) to a
    ``.safetensors`` file atomically, its configuration in the metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in {**model.state_dict(), **(extra or {})}.items()}
    metadata = {ESPNETV2_CONFIG_KEY: json.dumps(to_dict(model.config))}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_espnetv2_config(path: Path) -> ESPNetV2Config | None:
    """The configuration a file written by :func:`save_espnetv2` carries, or ``None``."""
    try:
        with safe_open(str(path), "pt") as handle:
            text = (handle.metadata() or {}).get(ESPNETV2_CONFIG_KEY)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: cannot read safetensors ({err})") from None
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        raise CheckpointError(f"{path}: the ESPNetv2 configuration in the metadata is not JSON") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: the ESPNetv2 configuration in the metadata is not a JSON object")
    return from_dict(ESPNetV2Config, data, where=str(path))


def load_espnetv2(path: str | Path, device: str | torch.device = "cpu") -> ESPNetV2Segmentation:
    """Build the network a published ESPNetv2 segmentation state dict describes and load it with
    every key used; returned in eval mode on ``device``.

    Accepts the bare state dict (the EdgeNets ``model_zoo`` files), a dict holding it under
    ``state_dict`` or ``model``, ``module.``-prefixed keys (``DataParallel``), and the
    ``.safetensors`` files this package writes (fine-tuned networks, DenseHybrid's head included;
    a training checkpoint's optimiser state is skipped).

    Raises:
        CheckpointError: Missing, unreadable or not an ESPNetv2 segmentation checkpoint, or any
            key missing / unexpected / mis-shaped (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ESPNetv2 checkpoint not found")
    if path.suffix.lower() == ".safetensors":
        tensors = load_safetensors(path)
        state = {k: v for k, v in tensors.items() if not k.startswith(("optimizer.", "flow."))}
        config = read_espnetv2_config(path) or config_from_state_dict(state, str(path))
        model = ESPNetV2Segmentation(config)
        load_strict(model, state, str(path))
        return model.to(device).eval()
    raw = _read_checkpoint(path)
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: not a state dict (found {type(raw).__name__})")
    state = as_tensors({k.removeprefix("module."): v for k, v in raw.items()}, path)
    model = ESPNetV2Segmentation(config_from_state_dict(state, str(path)))
    load_strict(model, state, str(path))
    return model.to(device).eval()


__all__ = [
    "ENCODER_CHANNELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TRAINED_SIZE",
    "ESPNetV2Config",
    "ESPNetV2Segmentation",
    "config_from_state_dict",
    "load_espnetv2",
    "msp_anomaly_score",
    "predict_logits",
    "working_size",
]
