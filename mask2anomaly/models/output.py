"""What the mask transformer returns, the same type in training and inference."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MaskPrediction:
    """One prediction head's output.

    Attributes:
        class_logits: ``[B, Q, K + 1]``; the last class is "no object".
        mask_logits: ``[B, Q, H/4, W/4]`` for an input of size ``H x W``.
    """

    class_logits: torch.Tensor
    mask_logits: torch.Tensor


@dataclass
class MaskTransformerOutput:
    """Final prediction plus the intermediate ones (deep supervision).

    Attributes:
        class_logits: ``[B, Q, K + 1]`` of the last decoder layer; the last class is "no object".
        mask_logits: ``[B, Q, H/4, W/4]`` of the last decoder layer.
        aux: the predictions made after the query initialisation and after each decoder layer but
            the last, in order (``num_decoder_layers`` entries); empty when not requested.
        dataset_logits: ``[B, 2, H/4, W/4]`` DenseHybrid's dataset-posterior logits (inlier,
            outlier) when the model has that head, else ``None``.
    """

    class_logits: torch.Tensor
    mask_logits: torch.Tensor
    aux: tuple[MaskPrediction, ...] = ()
    dataset_logits: torch.Tensor | None = None
