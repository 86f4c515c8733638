"""Pixel-level anomaly metrics: AuPRC (average precision), FPR at 95% TPR, AUROC and best F1.

Anomaly (label 1) is the positive class; void pixels (255) never count; all valid pixels of the
dataset are pooled (images are not averaged). Two protocols:

``"exact"`` (default)
    Every distinct score of the pooled dataset is a threshold, ties grouped, predicted positive =
    ``score >= threshold``. AP = sum over thresholds, descending, of (R_n - R_{n-1}) P_n, which is
    scikit-learn's ``average_precision_score``, what the Fishyscapes benchmark code
    (``bdlb/fishyscapes/benchmark.py`` of hermannsblum/bdl-benchmark) reports; AUROC = area of
    the trapezoidal ROC with ties grouped (``roc_auc_score``); FPR95 = FPR at the highest threshold
    whose TPR >= 0.95 (``roc_curve(..., drop_intermediate=False)``); best F1 = max over thresholds
    of 2TP / (2TP + FP + FN), reported with its threshold.

    Algorithm. Each float score is mapped to an order-preserving unsigned integer key (see
    ``_float_order``). Per image, the anomaly pixels become a table of (distinct key, count), and
    so do the inlier pixels when their scores are float16 (one ``bincount`` over 65536 buckets)
    or heavily tied; otherwise the inlier keys are appended, one per pixel (4 bytes a pixel), to
    one buffer that grows in place (``ndarray.resize``, which remaps large buffers instead of
    copying them) and is sorted in place once, when the metrics are computed.
    Tables of distinct keys are merged into one once eight accumulate (while small), so their
    memory is bounded by the distinct scores of the dataset (65536 for float16); continuous
    float32 scores, where nearly every pixel is a distinct score that the exact answer needs,
    cost 4 bytes an inlier pixel. ``merge`` appends the other state's tables and keys.
    ``compute`` needs counts only at the distinct *positive* scores v (negative-only thresholds
    change neither recall, nor the positive-weighted ROC sum, nor the best F1): it pools the
    positive tables, and binary searches of the ascending positive keys in every inlier table give
    the negatives scoring above v and equal to v (two tables at a time on two threads when they are
    large); only inliers scoring at least the lowest anomaly score are searched. With P positives,
    N negatives, TP(v) and FP(v) the pixels scoring >= v:
    AP = sum_v pos(v)/P * TP(v)/(TP(v)+FP(v)); AUROC = sum_v pos(v) (N - FP(v) + neg_eq(v)/2) / (PN)
    (the Mann-Whitney form of the trapezoid); FPR95 = FP(v*)/N at the highest v* with
    TP(v*)/P >= 0.95; F1(v) = 2TP(v) / (TP(v) + FP(v) + P). Counts are int64, ratios float64.

``"mask2anomaly"``
    The official Mask2Anomaly evaluation (``anomaly_utils/anomaly_inference.py`` of the authors'
    repository; the paper's ablation tables use it): images whose label has no anomaly pixel are
    skipped, scores are float32 as that script stores them (float64 maps are rounded to float32),
    and the inlier and anomaly pixels of the other images are pooled. AuPRC = scikit-learn's
    ``average_precision_score`` and AUROC = ``auc(roc_curve)``, both as in ``"exact"``; FPR95 =
    ``ood_metrics.fpr_at_95_tpr``: the FPR linearly interpolated at TPR 0.95 on the ROC curve
    (``np.interp`` over the curve's points, which at a TPR of exactly 0.95 takes the last point of
    that level, i.e. the highest FPR there). The ROC points needed are the two ends of each
    horizontal run of the curve, all derived from the exact counts at the anomaly scores. Ours
    interpolates between the ends of runs where scikit-learn's ``drop_intermediate`` may have
    removed a collinear point, which changes the result by at most a rounding error. Best F1 is
    the exact one, on the pooled pixels of the images kept.

``"smiyc"``
    Reproduces road-anomaly-benchmark's ``PixBinaryClass`` (the Segment Me If You Can
    leaderboard; ``metrics/pixel_classification.py`` and ``metrics/pixel_classification_curves.py``
    at its current version, which fixed the best-F1 threshold in August 2023) as it runs with
    numpy 2. Optionally cast the scores to float16 first (as its stored score files are). Per
    image, bin edges = ``{vmin - eps, vmax + eps}`` (``eps = max(0.01 (vmax - vmin), 0.01)``,
    computed in the score dtype) U ``np.quantile`` of the anomaly scores and of the inlier scores
    at ``min(384, n)`` evenly spaced levels each; ``np.histogram`` counts per bin, each bin's count
    assigned to its lower edge. The per-image (edge, counts) lists are concatenated in image order
    and sorted descending with ``np.argsort`` (ties resolved as numpy's default sort does),
    accumulated, and rows of repeated thresholds collapsed to their last occurrence except the
    very first row; a start row (nothing predicted, threshold = highest + 1) and an end row
    (everything predicted, threshold = highest - 1) are added when missing. AP = sum
    diff(recall) * precision[1:], AUROC = trapezoid, FPR95 = FPR at the first row with TPR >=
    0.95; best F1 = F1 at ``nanargmax`` (the first maximum, from high to low thresholds), and its
    threshold is that row's, which is what the benchmark saves with its curve and reads back
    (``get_thresh_p_from_curve`` in ``metrics/instance_segmentation.py``) as the threshold of its
    component metrics. The binning is an approximation (it can overstate AP by about a point when
    images have no anomaly); publish ``"exact"`` numbers and use this mode to compare with the
    leaderboard.

    With numpy 1.23 (the version the benchmark's requirements pin) two things differ: numpy's old
    introsort orders equal thresholds differently from the SIMD sort numpy 2 uses on AVX2/AVX-512
    machines, which changes the first curve row when several images share the highest threshold
    (about one AP point on binary score maps), and the component threshold is rounded to float16
    before the comparison. Images without a valid pixel are skipped (the benchmark fails on them).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mask2anomaly.errors import UserError
from mask2anomaly.metrics._common import ANOMALY, INLIER, VOID, check_pair, raise_not_finite, warn_undefined
from mask2anomaly.metrics._float_order import float_to_key, key_dtype, key_to_float, widen_keys

Protocol = Literal["exact", "smiyc", "mask2anomaly"]
PROTOCOLS = ("exact", "smiyc", "mask2anomaly")

_PARALLEL_COUNT = 1 << 22
"""Stored inlier keys beyond which ``compute`` searches its tables on two threads."""
_COMPACT_AFTER = 8
_COMPACT_MAX_ENTRIES = 1 << 22
_SMIYC_QUANTILES = 384
_FLOAT_OF_WIDTH = {2: np.float16, 4: np.float32, 8: np.float64}


@dataclass(frozen=True)
class PixelResult:
    """Pixel-level metrics of a dataset, all fractions in [0, 1] (the threshold is a score).

    Attributes:
        auprc: average precision (area under the precision-recall curve).
        fpr95: false positive rate at the first threshold whose true positive rate >= 0.95.
        auroc: area under the ROC curve.
        best_f1: maximum F1 over thresholds.
        best_f1_threshold: the score threshold of ``best_f1`` (predicted positive = score >= it).
        num_positive: anomaly pixels counted.
        num_negative: inlier pixels counted.
        num_skipped: images the protocol left out (``"mask2anomaly"``: those without anomaly).
    """

    auprc: float
    fpr95: float
    auroc: float
    best_f1: float
    best_f1_threshold: float
    num_positive: int
    num_negative: int
    num_skipped: int = 0


Table = tuple[np.ndarray, "np.ndarray | None"]
"""``(keys, counts)``: with counts, keys ``(D,)`` are sorted and distinct and counts ``(D,)`` their
multiplicities; with counts ``None``, keys are one key per pixel (sorted where a search needs it)."""


class KeyBuffer:
    """Keys appended image after image into one buffer, sorted in place once when read.

    The buffer grows by exactly what is appended, with ``ndarray.resize``: the C library remaps a
    large block instead of copying it, so appending touches only the new keys' memory, and no
    second copy of the keys is ever made (first-touching fresh memory costs more than sorting it
    on the machines we measured, and ``resize`` zero-fills whatever it adds).
    """

    def __init__(self, dtype: type[np.unsignedinteger]) -> None:
        self.keys = np.zeros(0, dtype)
        self.size = 0
        self.is_sorted = True

    def append(self, keys: np.ndarray) -> None:
        """Add ``keys`` (same dtype)."""
        end = self.size + keys.size
        if end > self.keys.size:
            self.keys.resize(end, refcheck=False)
        self.keys[self.size : end] = keys
        self.size = end
        self.is_sorted = False

    def sorted_keys(self) -> np.ndarray:
        """The keys, sorted (a view of the buffer, valid until the next ``append``)."""
        view = self.keys[: self.size]
        if not self.is_sorted:
            view.sort()
            self.is_sorted = True
        return view

    def widened(self, width: int) -> KeyBuffer:
        """The same keys as keys of the float type of ``width`` bytes (this buffer if it has them)."""
        if self.keys.dtype.itemsize == width:
            return self
        wider = KeyBuffer(key_dtype(np.dtype(_FLOAT_OF_WIDTH[width])))
        wider.append(widen_keys(self.keys[: self.size], width))
        return wider

    def __getstate__(self) -> dict:
        return {"keys": self.keys[: self.size].copy(), "is_sorted": self.is_sorted}

    def __setstate__(self, state: dict) -> None:
        self.keys, self.is_sorted = state["keys"], state["is_sorted"]
        self.size = self.keys.size


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal values in a sorted 1-D array."""
    if sorted_values.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.int64)
    starts = np.concatenate(([0], np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1))
    lengths = np.diff(np.append(starts, sorted_values.size))
    return starts, lengths


def _distinct(keys: np.ndarray) -> Table:
    """Sorted distinct keys and their counts."""
    keys, counts = np.unique(keys, return_counts=True)
    return keys, counts.astype(np.int64)


def image_tables(scores: np.ndarray, labels: np.ndarray, source: str | None = None) -> tuple[Table, Table]:
    """Score tables of one image: its inlier pixels and its anomaly pixels.

    Args:
        scores: ``(P,)`` float16/32/64 scores.
        labels: ``(P,)`` uint8 labels in {0, 1, 255}.
        source: file or image name for the error raised on NaN/inf scores.

    Returns:
        ``(negatives, positives)``; positives (and float16 or heavily tied inlier scores) as sorted
        distinct keys with counts, other inlier scores as one unsorted key per pixel.
    """
    positive_scores = scores[labels == ANOMALY]
    negative_scores = scores[labels == INLIER]
    for part in (positive_scores, negative_scores):
        if not np.isfinite(part).all():
            raise_not_finite(part, source)
    positives = _distinct(float_to_key(positive_scores, in_place=True))
    keys = float_to_key(negative_scores, in_place=True)
    if scores.dtype == np.float16:
        hist = np.bincount(keys, minlength=1 << 16)
        present = np.flatnonzero(hist)
        return (present.astype(np.uint16), hist[present]), positives
    sample = keys[:: max(1, keys.size // 4096)]
    if 2 * np.unique(sample).size <= sample.size:
        return _distinct(keys), positives
    return (keys, None), positives


def merge_tables(tables: list[Table]) -> Table:
    """One sorted distinct table holding the summed counts of ``tables`` (same key dtype)."""
    keys = np.concatenate([k for k, _ in tables])
    counts = np.concatenate([np.ones(k.size, np.int64) if c is None else c.astype(np.int64) for k, c in tables])
    order = np.argsort(keys)
    keys, counts = keys[order], counts[order]
    starts, _ = _runs(keys)
    if starts.size == 0:
        return keys, counts
    return keys[starts], np.add.reduceat(counts, starts)


def count_at_least(tables: list[Table], query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query key (ascending), the total count of table entries with key >= query and with
    key > query (that is, >= query + 1: keys are integers and queries are keys of finite floats,
    below the largest key).

    Two binary searches per query and table; numpy narrows each search with the previous one
    when the queries ascend.
    """
    following = query + query.dtype.type(1)
    at_least = np.zeros(query.shape, np.int64)
    above = np.zeros(query.shape, np.int64)
    for keys, counts in tables:
        left = np.searchsorted(keys, query, side="left")
        right = np.searchsorted(keys, following, side="left")
        if counts is None:
            at_least += keys.size - left
            above += keys.size - right
        else:
            suffix = np.append(np.cumsum(counts[::-1].astype(np.int64))[::-1], 0)
            at_least += suffix[left]
            above += suffix[right]
    return at_least, above


def interpolated_fpr95(tp: np.ndarray, fp: np.ndarray, neg_above: np.ndarray, p: int, n: int) -> float:
    """FPR at TPR 0.95 interpolated on the ROC curve as ``ood_metrics.fpr_at_95_tpr`` does.

    The curve's TPR levels are ``tp / p``; each level is a horizontal run from ``fp / n`` (its
    anomaly score reached) to the FPR just before the next anomaly score (``neg_above`` of the
    next value; 1 after the last), and the curve starts at (0, 0). ``np.interp`` over the ends of
    the runs gives the value between runs and, at a level of exactly 0.95, the run's last point.

    Args:
        tp: ``(V,)`` positives scoring at least each value (descending values).
        fp: ``(V,)`` negatives scoring at least each value.
        neg_above: ``(V,)`` negatives scoring strictly above each value.
        p: positives; n: negatives (both > 0).
    """
    run_end = np.append(neg_above[1:], n)
    tpr = np.concatenate(([0.0, 0.0], np.repeat(tp / p, 2)))
    fpr = np.concatenate(([0.0, neg_above[0] / n], np.stack([fp / n, run_end / n], axis=1).ravel()))
    return float(np.interp(0.95, tpr, fpr))


def metrics_from_positive_grid(
    values: np.ndarray,
    pos: np.ndarray,
    neg_above: np.ndarray,
    neg_equal: np.ndarray,
    num_negative: int,
    interpolate_fpr95: bool = False,
) -> PixelResult:
    """Exact pooled metrics from counts at the distinct scores that carry anomaly pixels.

    Args:
        values: ``(V,)`` distinct scores holding at least one positive, descending.
        pos: ``(V,)`` positives at each value.
        neg_above: ``(V,)`` negatives scoring strictly above each value.
        neg_equal: ``(V,)`` negatives scoring exactly each value.
        num_negative: all negatives of the dataset.
        interpolate_fpr95: FPR95 interpolated at TPR 0.95 (``"mask2anomaly"``) instead of the FPR
            at the first threshold reaching it.

    Returns:
        The metrics; undefined ones are NaN with an :class:`UndefinedMetricWarning`.
    """
    pos = pos.astype(np.int64)
    num_positive = int(pos.sum())
    n = int(num_negative)
    if num_positive == 0:
        reason = "no anomaly pixel in the data"
        nan = warn_undefined("AuPRC, AUROC, FPR95 and best F1", reason)
        return PixelResult(nan, nan, nan, nan, nan, 0, n)
    tp = np.cumsum(pos)
    fp = (neg_above + neg_equal).astype(np.int64)
    p = float(num_positive)
    auprc = float(np.sum(pos / p * (tp / (tp + fp))))
    f1 = 2.0 * tp / (tp + fp + num_positive)
    best = int(np.argmax(f1))
    if n == 0:
        auroc = fpr95 = warn_undefined("AUROC and FPR95", "no inlier pixel in the data")
    else:
        below = n - fp
        auroc = float(np.sum(pos * (below + 0.5 * neg_equal)) / (p * n))
        if interpolate_fpr95:
            fpr95 = interpolated_fpr95(tp, fp, neg_above, num_positive, n)
        else:
            reach = int(np.argmax(tp / p >= 0.95))
            fpr95 = float(fp[reach] / n)
    return PixelResult(auprc, fpr95, auroc, float(f1[best]), float(values[best]), num_positive, n)


@dataclass
class _SmiycImage:
    thresholds: np.ndarray
    tp_rel: np.ndarray
    fp_rel: np.ndarray


def smiyc_range_edges(prob: np.ndarray) -> np.ndarray:
    """The two edges ``PixBinaryClass`` puts around an image's scores, ``vmin - eps`` and
    ``vmax + eps`` with ``eps = max(0.01 (vmax - vmin), 0.01)``, all in the score dtype as numpy 2
    evaluates that code (returned as float64, the dtype of the concatenated edges)."""
    dtype = prob.dtype.type
    low, high = prob.min(), prob.max()
    with np.errstate(over="ignore"):
        span = dtype(high - low)
        eps = max(dtype(span * dtype(1e-2)), dtype(1e-2))
        edges = np.array([dtype(low - eps), dtype(high + eps)], np.float64)
    if not np.isfinite(edges).all():
        raise UserError("the score range of an image overflows its dtype in the smiyc protocol")
    return edges


def smiyc_image_bins(scores: np.ndarray, labels: np.ndarray) -> tuple[_SmiycImage, int, int]:
    """One image's ``PixBinaryClass`` histogram: per-bin lower edges (descending) and counts."""
    valid = labels != VOID
    prob = scores[valid]
    truth = labels[valid] == ANOMALY
    at_true, at_false = prob[truth], prob[~truth]
    if prob.size == 0:
        empty = np.zeros(0)
        return _SmiycImage(empty, empty.astype(np.int64), empty.astype(np.int64)), 0, 0
    parts = [smiyc_range_edges(prob)]
    for part in (at_true, at_false):
        if part.size:
            parts.append(np.quantile(part, np.linspace(0, 1, min(_SMIYC_QUANTILES, part.size))))
    edges = np.unique(np.concatenate(parts))
    tp_rel, _ = np.histogram(at_true, bins=edges)
    fp_rel, _ = np.histogram(at_false, bins=edges)
    image = _SmiycImage(edges[:-1][::-1].copy(), tp_rel[::-1].copy(), fp_rel[::-1].copy())
    return image, int(at_true.size), int(at_false.size)


def smiyc_metrics(images: list[_SmiycImage], num_positive: int, num_negative: int) -> PixelResult:
    """Pool per-image SMIYC bins and compute the curve metrics as ``PixBinaryClass`` does."""
    if num_positive == 0:
        nan = warn_undefined("AuPRC, AUROC, FPR95 and best F1", "no anomaly pixel in the data")
        return PixelResult(nan, nan, nan, nan, nan, 0, num_negative)
    thresholds = np.concatenate([im.thresholds for im in images])
    order = np.argsort(thresholds)[::-1]
    thresholds = thresholds[order]
    tp = np.cumsum(np.concatenate([im.tp_rel for im in images])[order].astype(np.float64))
    fp = np.cumsum(np.concatenate([im.fp_rel for im in images])[order].astype(np.float64))
    keep = np.concatenate(([0], np.flatnonzero(thresholds[:-1] != thresholds[1:]), [thresholds.size - 1]))
    tp, fp, thresholds = tp[keep], fp[keep], thresholds[keep]
    p, n = float(num_positive), float(num_negative)
    if tp[0] != 0 or fp[0] != 0:
        tp, fp = np.append(0.0, tp), np.append(0.0, fp)
        thresholds = np.append(float(thresholds.max()) + 1, thresholds)
    if tp[-1] != p or fp[-1] != n:
        tp, fp = np.append(tp, p), np.append(fp, n)
        thresholds = np.append(thresholds, float(thresholds.max()) - 1)
    fn = p - tp
    recall = tp / p
    predicted = tp + fp
    precision = np.ones(tp.size)
    precision[predicted > 0] = tp[predicted > 0] / predicted[predicted > 0]
    auprc = float(np.sum(np.diff(recall) * precision[1:]))
    f1 = 2 * tp / (2 * tp + fp + fn)
    best = int(np.nanargmax(f1))
    if num_negative == 0:
        auroc = fpr95 = warn_undefined("AUROC and FPR95", "no inlier pixel in the data")
    else:
        fpr = fp / n
        auroc = float(np.trapezoid(recall, fpr))
        reach = int(np.searchsorted(recall, 0.95))
        fpr95 = float(fpr[reach]) if reach < recall.size else 1.0
    return PixelResult(auprc, fpr95, auroc, float(f1[best]), float(thresholds[best]), num_positive, num_negative)


@dataclass
class PixelMetrics:
    """Streaming pixel metrics: ``update`` per image, ``merge`` shards, ``compute`` at the end.

    Args:
        protocol: ``"exact"`` (default), ``"smiyc"`` or ``"mask2anomaly"``; see the module
            docstring.
        smiyc_float16: in the ``"smiyc"`` protocol, cast scores to float16 first as the
            benchmark's stored score files are (default True). Ignored by the others.

    Example:
        >>> import numpy as np
        >>> m = PixelMetrics()
        >>> m.update(np.array([[0.9, 0.2], [0.4, 0.1]], np.float32), np.array([[1, 0], [1, 255]]))
        >>> round(m.compute().auprc, 6), m.compute().num_negative
        (1.0, 1)
    """

    protocol: Protocol = "exact"
    smiyc_float16: bool = True
    _width: int = field(default=0, init=False, repr=False)
    _neg: list[Table] = field(default_factory=list, init=False, repr=False)
    _raw: list[KeyBuffer] = field(default_factory=list, init=False, repr=False)
    _pos: list[Table] = field(default_factory=list, init=False, repr=False)
    _smiyc: list[_SmiycImage] = field(default_factory=list, init=False, repr=False)
    _num_positive: int = field(default=0, init=False, repr=False)
    _num_negative: int = field(default=0, init=False, repr=False)
    _num_skipped: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            expected = ", ".join(repr(name) for name in PROTOCOLS)
            raise UserError(f"unknown pixel metric protocol {self.protocol!r} (expected one of {expected})")

    def reset(self) -> None:
        """Forget every image seen."""
        self._width, self._num_positive, self._num_negative, self._num_skipped = 0, 0, 0, 0
        self._neg, self._pos, self._smiyc, self._raw = [], [], [], []

    def update(self, scores: Any, labels: Any, source: str | None = None) -> None:
        """Add one image.

        Args:
            scores: ``(H, W)`` float16/32/64 scores (numpy or torch), higher = more anomalous.
            labels: ``(H, W)`` labels, 0 inlier, 1 anomaly, 255 void.
            source: file or image name for error messages.
        """
        if self.protocol == "smiyc":
            s, lab = check_pair(scores, labels, source)
            if self.smiyc_float16:
                with np.errstate(over="ignore"):
                    s = s.astype(np.float16)
                if not np.isfinite(s[lab != VOID]).all():
                    where = f"{source}: " if source else ""
                    raise UserError(f"{where}scores overflow float16 (|score| > 65504) in the smiyc protocol")
            image, pos, neg = smiyc_image_bins(s, lab)
            self._smiyc.append(image)
            self._num_positive += pos
            self._num_negative += neg
            return
        s, lab = check_pair(scores, labels, source, check_finite=False)
        if self.protocol == "mask2anomaly":
            if not np.any(lab == ANOMALY):
                self._num_skipped += 1
                return
            if s.dtype == np.float64:
                s = s.astype(np.float32)
        width = max(self._width, s.dtype.itemsize)
        if s.dtype.itemsize < width:
            s = s.astype(_FLOAT_OF_WIDTH[width])
        neg, pos = image_tables(s, lab, source)
        self._set_width(width)
        if neg[1] is None:
            self._raw_keys().append(neg[0])
        else:
            self._neg.append(neg)
        self._pos.append(pos)
        self._num_positive += int(pos[1].sum())
        self._num_negative += neg[0].size if neg[1] is None else int(neg[1].sum())
        self._maybe_compact()

    def merge(self, other: PixelMetrics) -> None:
        """Add the images of ``other`` (same protocol) as if they had been updated after ours.

        ``other`` is absorbed: its stored keys are taken over without a copy and it is left
        empty, as after :meth:`reset`.
        """
        if (other.protocol, other.smiyc_float16) != (self.protocol, self.smiyc_float16):
            raise UserError("cannot merge pixel metric states of different protocols")
        self._smiyc.extend(other._smiyc)
        if other._width:
            self._set_width(max(self._width, other._width))
            self._neg.extend((widen_keys(k, self._width), c) for k, c in other._neg)
            self._pos.extend((widen_keys(k, self._width), c) for k, c in other._pos)
            self._raw.extend(buffer.widened(self._width) for buffer in other._raw)
        self._num_positive += other._num_positive
        self._num_negative += other._num_negative
        self._num_skipped += other._num_skipped
        other.reset()
        self._maybe_compact()

    def compute(self) -> PixelResult:
        """Metrics over every image seen so far."""
        if self.protocol == "smiyc":
            return smiyc_metrics(self._smiyc, self._num_positive, self._num_negative)
        interpolate = self.protocol == "mask2anomaly"
        values, pos, neg_above, neg_equal = self.positive_grid()
        result = metrics_from_positive_grid(values, pos, neg_above, neg_equal, self._num_negative, interpolate)
        return dataclasses.replace(result, num_skipped=self._num_skipped)

    def positive_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Exact protocols: counts at the distinct scores holding anomaly pixels.

        Returns:
            ``(values, pos, neg_above, neg_equal)``, each ``(V,)``: the scores (descending, float64),
            the anomaly pixels at each, and the inlier pixels strictly above and exactly at each.
        """
        if self.protocol == "smiyc":
            raise UserError("exact counts need an exact-protocol pixel state, not a binned one")
        if self._num_positive == 0:
            empty = np.zeros(0)
            return empty, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        keys, pos = self._positive_table()
        neg_at_least, neg_above = self._negative_counts(keys)
        return key_to_float(keys).astype(np.float64), pos, neg_above, neg_at_least - neg_above

    @property
    def num_negative(self) -> int:
        """Inlier pixels counted so far."""
        return self._num_negative

    def _positive_table(self) -> Table:
        keys, pos = merge_tables(self._pos)
        return keys[::-1], pos[::-1]

    def _negative_counts(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inlier pixels with key >= and > each query key (queries descending); only the inliers
        scoring at least the lowest query are searched."""
        ascending = query[::-1]
        lowest = ascending[0]
        tables = []
        for keys, counts in self._neg:
            selected = keys >= lowest
            tables.append((keys[selected], counts[selected]))
        for buffer in self._raw:
            keys = buffer.sorted_keys()
            tables.append((keys[int(np.searchsorted(keys, lowest)) :], None))
        if len(tables) > 1 and sum(k.size for k, _ in tables) > _PARALLEL_COUNT:
            with ThreadPoolExecutor(2) as pool:
                parts = list(pool.map(lambda table: count_at_least([table], ascending), tables))
            at_least, above = (sum(part[i] for part in parts) for i in (0, 1))
        else:
            at_least, above = count_at_least(tables, ascending)
        return at_least[::-1], above[::-1]

    def consolidate(self) -> None:
        """Sort the stored inlier keys and merge the anomaly tables now rather than in ``compute``
        (lets the thread that counted a share of the images also do this for it)."""
        for buffer in self._raw:
            buffer.sorted_keys()
        if len(self._pos) > 1:
            self._pos = [merge_tables(self._pos)]

    def _raw_keys(self) -> KeyBuffer:
        if not self._raw:
            self._raw.append(KeyBuffer(key_dtype(np.dtype(_FLOAT_OF_WIDTH[self._width]))))
        return self._raw[0]

    def _set_width(self, width: int) -> None:
        if width != self._width:
            self._neg = [(widen_keys(k, width), c) for k, c in self._neg]
            self._pos = [(widen_keys(k, width), c) for k, c in self._pos]
            self._raw = [buffer.widened(width) for buffer in self._raw]
            self._width = width

    def _maybe_compact(self) -> None:
        for name in ("_neg", "_pos"):
            tables = getattr(self, name)
            distinct = [table for table in tables if table[1] is not None]
            if len(distinct) >= _COMPACT_AFTER and sum(k.size for k, _ in distinct) <= _COMPACT_MAX_ENTRIES:
                setattr(self, name, [table for table in tables if table[1] is None] + [merge_tables(distinct)])


def pixel_metrics(scores: Any, labels: Any, protocol: Protocol = "exact") -> PixelResult:
    """Pixel metrics of one score map (or of a stack ``(B, H, W)`` pooled as one dataset).

    For ``"smiyc"`` a stack is binned per image, as the benchmark does.

    Args:
        scores: ``(H, W)`` or ``(B, H, W)`` float scores, higher = more anomalous.
        labels: same shape; 0 inlier, 1 anomaly, 255 void.
        protocol: ``"exact"`` or ``"smiyc"``.
    """
    metric = PixelMetrics(protocol)
    s = np.asarray(scores) if not hasattr(scores, "detach") else scores
    if getattr(s, "ndim", 0) == 3:
        for i in range(s.shape[0]):
            metric.update(s[i], labels[i])
    else:
        metric.update(scores, labels)
    return metric.compute()
