"""Input checks and conventions shared by every metric.

Label maps use one convention everywhere: ``0`` = inlier, ``1`` = anomaly, ``255`` = void (never
counted). Score maps are floating point, higher = more anomalous. Inputs may be numpy arrays or
torch tensors; nothing is transformed silently (no sigmoid, no clipping, no dtype narrowing).
Problems with the input raise :class:`~mask2anomaly.errors.UserError` with one line naming the
source (when given) and what is wrong; a metric that is mathematically undefined for the data
(for example AP on a dataset without anomaly pixels) is returned as NaN with an
:class:`UndefinedMetricWarning` saying why.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from mask2anomaly.errors import UserError

INLIER = 0
ANOMALY = 1
VOID = 255

_SCORE_DTYPES = (np.float16, np.float32, np.float64)


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the data it was given and is reported as NaN."""


def warn_undefined(metric: str, reason: str) -> float:
    """Warn that ``metric`` is undefined because of ``reason``; return NaN."""
    warnings.warn(f"{metric} undefined ({reason}), reported as NaN", UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def to_numpy(array: Any) -> np.ndarray:
    """Return ``array`` (numpy array, torch tensor or sequence) as a numpy array without copying
    when possible. ``bfloat16`` tensors become float32, which represents them exactly."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):
        tensor = array.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(array)


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def check_scores(scores: Any, source: str | None = None) -> np.ndarray:
    """Return ``scores`` as a float16/32/64 numpy array; raise on other dtypes."""
    arr = to_numpy(scores)
    if arr.dtype not in _SCORE_DTYPES:
        raise UserError(f"{_where(source)}scores must be float16, float32 or float64, got {arr.dtype}")
    return arr


def check_labels(labels: Any, source: str | None = None, allowed: tuple[int, ...] = (0, 1, 255)) -> np.ndarray:
    """Return ``labels`` as a uint8 array after checking that every value is in ``allowed``."""
    arr = to_numpy(labels)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise UserError(f"{_where(source)}labels must be integers, got {arr.dtype}")
    if sum(int(np.count_nonzero(arr == value)) for value in allowed) == arr.size:
        return arr.astype(np.uint8, copy=False)
    present = np.unique(arr)
    unexpected = np.setdiff1d(present, np.asarray(allowed))
    if unexpected.size:
        shown = ", ".join(str(int(v)) for v in unexpected[:5])
        raise UserError(
            f"{_where(source)}unexpected label values {shown} (expected only {', '.join(str(v) for v in allowed)})"
        )
    return arr.astype(np.uint8, copy=False)


def check_pair(
    scores: Any, labels: Any, source: str | None = None, check_finite: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Check a score map and its label map: same shape, float scores, labels in {0, 1, 255}, and
    finite scores on every non-void pixel (void pixels may hold anything).

    Args:
        scores: ``(H, W)`` (or any shape) float16/32/64 scores, higher = more anomalous.
        labels: same shape, values 0 (inlier), 1 (anomaly), 255 (void).
        source: name of the file or image, used in error messages.
        check_finite: check for NaN/inf here; callers that sort the scores anyway pass False and
            call :func:`raise_not_finite` on the extremes.

    Returns:
        ``(scores, labels)`` flattened to 1-D numpy arrays (labels as uint8).
    """
    s = check_scores(scores, source)
    lab = check_labels(labels, source)
    if s.shape != lab.shape:
        raise UserError(f"{_where(source)}scores have shape {s.shape} but labels have shape {lab.shape}")
    s = s.ravel()
    lab = lab.ravel()
    if check_finite and not np.isfinite(s).all():
        valid = s[lab != VOID]
        if not np.isfinite(valid).all():
            raise_not_finite(valid, source)
    return s, lab


def raise_not_finite(values: np.ndarray, source: str | None = None) -> None:
    """Raise the error for scores that hold NaN or infinite values on non-void pixels."""
    bad = "NaN" if np.isnan(values).any() else "infinite"
    raise UserError(f"{_where(source)}scores contain {bad} values on non-void pixels")
