"""Training losses: Hungarian matching, the set criterion with deep supervision, outlier losses."""

from mask2anomaly.losses.config import OutlierLossConfig
from mask2anomaly.losses.mask_losses import dice_loss, pairwise_dice, pairwise_sigmoid_bce, sigmoid_bce_loss
from mask2anomaly.losses.matcher import HungarianMatcher, Target
from mask2anomaly.losses.outlier import (
    bce_outlier_loss,
    mask_contrastive_loss,
    negative_likelihood,
    outlier_loss,
    rba_outlier_loss,
    rba_score,
)
from mask2anomaly.losses.output import LossOutput
from mask2anomaly.losses.point_sampling import point_sample, uncertain_point_coords, uniform_point_coords
from mask2anomaly.losses.set_criterion import SetCriterion

__all__ = [
    "HungarianMatcher",
    "LossOutput",
    "OutlierLossConfig",
    "SetCriterion",
    "Target",
    "bce_outlier_loss",
    "dice_loss",
    "mask_contrastive_loss",
    "negative_likelihood",
    "outlier_loss",
    "pairwise_dice",
    "pairwise_sigmoid_bce",
    "point_sample",
    "rba_outlier_loss",
    "rba_score",
    "sigmoid_bce_loss",
    "uncertain_point_coords",
    "uniform_point_coords",
]
