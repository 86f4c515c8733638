"""Benchmark-exact evaluation metrics for anomaly, open-set semantic and open-set panoptic
segmentation.

One concept per module, each a pure core over sufficient statistics plus a small streaming class
with ``reset / update / merge / compute`` (states merge exactly across processes):

- :mod:`~mask2anomaly.metrics.pixel`: AuPRC, FPR95, AUROC, best F1 (exact, or SMIYC-binned);
- :mod:`~mask2anomaly.metrics.component`: SMIYC sIoU, PPV, F1*;
- :mod:`~mask2anomaly.metrics.mdm`: Maskomaly's Maximal Detection Margin;
- :mod:`~mask2anomaly.metrics.open_iou`: mIoU / Open-IoU with TPR-95 calibration;
- :mod:`~mask2anomaly.metrics.panoptic`: PQ / SQ / RQ (panopticapi) with EOPSN's unknown class.

Labels: 0 inlier, 1 anomaly, 255 void. All metric values are fractions in [0, 1].
"""

from mask2anomaly.metrics._common import UndefinedMetricWarning
from mask2anomaly.metrics.component import ComponentMetrics, ComponentResult
from mask2anomaly.metrics.mdm import MaximalDetectionMargin, MDMResult
from mask2anomaly.metrics.open_iou import (
    CrossCalibrationResult,
    OpenSetConfusion,
    OpenSetResult,
    calibrate_threshold,
    cross_calibrated_open_iou,
)
from mask2anomaly.metrics.panoptic import PanopticQuality, PanopticResult, PQValues, evaluate_panoptic
from mask2anomaly.metrics.pixel import PixelMetrics, PixelResult, pixel_metrics

__all__ = [
    "ComponentMetrics",
    "ComponentResult",
    "CrossCalibrationResult",
    "MDMResult",
    "MaximalDetectionMargin",
    "OpenSetConfusion",
    "OpenSetResult",
    "PQValues",
    "PanopticQuality",
    "PanopticResult",
    "PixelMetrics",
    "PixelResult",
    "UndefinedMetricWarning",
    "calibrate_threshold",
    "cross_calibrated_open_iou",
    "evaluate_panoptic",
    "pixel_metrics",
]
