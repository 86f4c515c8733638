"""Validation during training: closed-set mIoU and, when the set has anomaly labels, the pixel
metrics of the Mask2Anomaly score (``1 - max_c`` of the semantic marginal, paper Eq. 5)."""

from __future__ import annotations

import numpy as np
import torch

from mask2anomaly.data.base import UNKNOWN, VOID, Reader
from mask2anomaly.metrics import OpenSetConfusion, PixelMetrics
from mask2anomaly.models import MaskTransformer
from mask2anomaly.models.postprocess import semantic_marginal


@torch.inference_mode()
def validate(model: MaskTransformer, reader: Reader, max_images: int = 0) -> dict[str, float]:
    """Evaluate ``model`` on the first ``max_images`` images of ``reader`` (0: all).

    Returns:
        ``{"miou"}`` when the set has semantic labels, plus ``{"auprc", "fpr95", "auroc"}`` when it
        has anomaly labels; fractions in [0, 1].
    """
    was_training = model.training
    model.eval()
    k = model.config.num_classes
    confusion = OpenSetConfusion(num_known=k, threshold=float("inf"))
    pixels = PixelMetrics()
    has_semantic = has_anomaly = False
    count = len(reader) if max_images <= 0 else min(max_images, len(reader))
    for index in range(count):
        sample = reader[index]
        pixel_values, sizes = model.preprocess([sample.image])
        height, width = sizes[0]
        marginal = semantic_marginal(model(pixel_values), tuple(pixel_values.shape[-2:]))[0, :, :height, :width]
        best, prediction = marginal.max(0)
        score = (1 - best).float().cpu().numpy()
        if sample.semantic is not None:
            has_semantic = True
            gt = sample.semantic.astype(np.int64)
            gt[(gt >= k) & (gt != VOID)] = VOID
            gt[sample.semantic == UNKNOWN] = VOID
            confusion.update(prediction.cpu().numpy(), np.zeros_like(score), gt, source=sample.name)
        if sample.anomaly is not None:
            has_anomaly = True
            pixels.update(score, sample.anomaly, source=sample.name)
    model.train(was_training)
    result: dict[str, float] = {}
    if has_semantic:
        result["miou"] = confusion.compute().miou
    if has_anomaly:
        pixel = pixels.compute()
        result.update(auprc=pixel.auprc, fpr95=pixel.fpr95, auroc=pixel.auroc)
    return result
