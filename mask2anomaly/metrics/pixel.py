"""Pixel-level anomaly metrics: AuPRC (average precision), FPR at 95% TPR, AUROC and best F1.

Anomaly (label 1) is the positive class; void pixels (255) never count; all valid pixels of the
dataset are pooled (images are not averaged). Two protocols:

``"exact"`` (default)
    Every distinct score of the pooled dataset is a threshold, ties grouped, predicted positive =
    ``score >= threshold``. AP = sum over thresholds, descending, of (R_n - R_{n-1}) P_n, which is
    scikit-learn's ``average_precision_score`` and the Fishyscapes benchmark code; AUROC = area of
    the trapezoidal ROC with ties grouped (``roc_auc_score``); FPR95 = FPR at the highest threshold
    whose TPR >= 0.95 (``roc_curve(..., drop_intermediate=False)``); best F1 = max over thresholds
    of 2TP / (2TP + FP + FN), reported with its threshold.

    Algorithm. Each float score is mapped to an order-preserving unsigned integer key (see
    ``_float_order``). Per image, the anomaly pixels become a table of (distinct key, count), and
    so do the inlier pixels when their scores are float16 (one ``bincount`` over 65536 buckets)
    or heavily tied; otherwise the inlier keys are kept as they are (4 bytes a pixel, no sort).
    Tables of distinct keys are merged into one once eight accumulate (while small), so their
    memory is bounded by the distinct scores of the dataset (65536 for float16); continuous
    float32 scores, where nearly every pixel is a distinct score that the exact answer needs,
    cost 4 bytes an inlier pixel (twice that while ``compute`` merges them). ``merge`` appends
    the other state's tables. ``compute`` needs counts only at the distinct *positive* scores v
    (negative-only thresholds change neither recall, nor the positive-weighted ROC sum, nor the
    best F1): it pools the positive tables, sorts the per-pixel inlier keys once (in place, into
    one array that replaces the per-image ones in the state), and one binary search per positive
    value and table gives the negatives scoring above v and equal to v; only inliers scoring at
    least the lowest anomaly score are searched. With P positives, N negatives, TP(v) and FP(v) the pixels scoring >= v:
    AP = sum_v pos(v)/P * TP(v)/(TP(v)+FP(v)); AUROC = sum_v pos(v) (N - FP(v) + neg_eq(v)/2) / (PN)
    (the Mann-Whitney form of the trapezoid); FPR95 = FP(v*)/N at the highest v* with
    TP(v*)/P >= 0.95; F1(v) = 2TP(v) / (TP(v) + FP(v) + P). Counts are int64, ratios float64.

``"smiyc"``
    Reproduces road-anomaly-benchmark's ``PixBinaryClass`` (the Segment Me If You Can
    leaderboard): optionally cast the scores to float16 first (as its stored score files are);
    per image, bin edges = {0, 1} U ``np.quantile`` of the anomaly scores and of the inlier
    scores at ``min(384, n)`` evenly spaced levels each, ``np.histogram`` counts per bin, each
    bin's count assigned to its lower edge; the per-image (edge, counts) lists are concatenated in
    image order and sorted descending with ``np.argsort`` (ties resolved as numpy's default sort
    does), accumulated, and rows of repeated thresholds collapsed to their last occurrence except
    the very first row, a (0, 0) start row prepended. AP = sum diff(recall) * precision[1:],
    AUROC = trapezoid, FPR95 = FPR at the first row with TPR >= 0.95. Its reported best-F1
    threshold is, as in that code, the pooled threshold list indexed with the F1 row index of the
    collapsed curve (so usually a few thresholds below the row where F1 peaks); when that index
    runs past the list the lowest threshold is returned. The binning is an approximation (it can
    overstate AP by about a point when images have no anomaly); publish ``"exact"`` numbers and
    use this mode to compare with the leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mask2anomaly.errors import UserError
from mask2anomaly.metrics._common import ANOMALY, INLIER, VOID, check_pair, raise_not_finite, warn_undefined
from mask2anomaly.metrics._float_order import float_to_key, key_to_float, widen_keys

Protocol = Literal["exact", "smiyc"]

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
    """

    auprc: float
    fpr95: float
    auroc: float
    best_f1: float
    best_f1_threshold: float
    num_positive: int
    num_negative: int


Table = tuple[np.ndarray, "np.ndarray | None"]
"""``(keys, counts)``: with counts, keys ``(D,)`` are sorted and distinct and counts ``(D,)`` their
multiplicities; with counts ``None``, keys are one unsorted key per pixel."""


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
    positives = _distinct(float_to_key(positive_scores))
    keys = float_to_key(negative_scores)
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
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    starts, _ = _runs(keys)
    if starts.size == 0:
        return keys, counts
    return keys[starts], np.add.reduceat(counts, starts)


def count_at_least(tables: list[Table], query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query key, the total count of table entries with key >= query and with key > query.

    Tables with counts ``None`` must be sorted here. One binary search per query and table; the
    second search (for ">") only for the queries that are present in the table.
    """
    at_least = np.zeros(query.shape, np.int64)
    above = np.zeros(query.shape, np.int64)
    for keys, counts in tables:
        left = np.searchsorted(keys, query, side="left")
        right = left.copy()
        hit = np.zeros(query.shape, bool)
        inside = left < keys.size
        hit[inside] = keys[left[inside]] == query[inside]
        right[hit] = np.searchsorted(keys, query[hit], side="right")
        if counts is None:
            at_least += keys.size - left
            above += keys.size - right
        else:
            suffix = np.append(np.cumsum(counts[::-1].astype(np.int64))[::-1], 0)
            at_least += suffix[left]
            above += suffix[right]
    return at_least, above


def metrics_from_positive_grid(
    values: np.ndarray, pos: np.ndarray, neg_above: np.ndarray, neg_equal: np.ndarray, num_negative: int
) -> PixelResult:
    """Exact pooled metrics from counts at the distinct scores that carry anomaly pixels.

    Args:
        values: ``(V,)`` distinct scores holding at least one positive, descending.
        pos: ``(V,)`` positives at each value.
        neg_above: ``(V,)`` negatives scoring strictly above each value.
        neg_equal: ``(V,)`` negatives scoring exactly each value.
        num_negative: all negatives of the dataset.

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
        reach = int(np.argmax(tp / p >= 0.95))
        fpr95 = float(fp[reach] / n)
    return PixelResult(auprc, fpr95, auroc, float(f1[best]), float(values[best]), num_positive, n)


@dataclass
class _SmiycImage:
    thresholds: np.ndarray
    tp_rel: np.ndarray
    fp_rel: np.ndarray


def smiyc_image_bins(scores: np.ndarray, labels: np.ndarray) -> tuple[_SmiycImage, int, int]:
    """One image's ``PixBinaryClass`` histogram: per-bin lower edges (descending) and counts."""
    valid = labels != VOID
    prob = scores[valid]
    truth = labels[valid] == ANOMALY
    at_true, at_false = prob[truth], prob[~truth]
    parts = [np.array([0.0, 1.0])]
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
    tp, fp = tp[keep], fp[keep]
    p, n = float(num_positive), float(num_negative)
    if tp[0] != 0 or fp[0] != 0:
        tp, fp = np.append(0.0, tp), np.append(0.0, fp)
    if tp[-1] != p or fp[-1] != n:
        tp, fp = np.append(tp, p), np.append(fp, n)
    fn = p - tp
    recall = tp / p
    predicted = tp + fp
    precision = np.ones(tp.size)
    precision[predicted > 0] = tp[predicted > 0] / predicted[predicted > 0]
    auprc = float(np.sum(np.diff(recall) * precision[1:]))
    f1 = 2 * tp / (2 * tp + fp + fn)
    best = int(np.nanargmax(f1))
    threshold = float(thresholds[min(best, thresholds.size - 1)])
    if num_negative == 0:
        auroc = fpr95 = warn_undefined("AUROC and FPR95", "no inlier pixel in the data")
    else:
        fpr = fp / n
        auroc = float(np.trapezoid(recall, fpr))
        reach = int(np.searchsorted(recall, 0.95))
        fpr95 = float(fpr[reach]) if reach < recall.size else 1.0
    return PixelResult(auprc, fpr95, auroc, float(f1[best]), threshold, num_positive, num_negative)


@dataclass
class PixelMetrics:
    """Streaming pixel metrics: ``update`` per image, ``merge`` shards, ``compute`` at the end.

    Args:
        protocol: ``"exact"`` (default) or ``"smiyc"``; see the module docstring.
        smiyc_float16: in the ``"smiyc"`` protocol, cast scores to float16 first as the
            benchmark's stored score files are (default True). Ignored by ``"exact"``.

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
    _raw_sorted: bool = field(default=True, init=False, repr=False)
    _pos: list[Table] = field(default_factory=list, init=False, repr=False)
    _smiyc: list[_SmiycImage] = field(default_factory=list, init=False, repr=False)
    _num_positive: int = field(default=0, init=False, repr=False)
    _num_negative: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in ("exact", "smiyc"):
            raise UserError(f"unknown pixel metric protocol {self.protocol!r} (expected 'exact' or 'smiyc')")

    def reset(self) -> None:
        """Forget every image seen."""
        self._width, self._num_positive, self._num_negative = 0, 0, 0
        self._neg, self._pos, self._smiyc = [], [], []
        self._raw_sorted = True

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
        width = max(self._width, s.dtype.itemsize)
        if s.dtype.itemsize < width:
            s = s.astype(_FLOAT_OF_WIDTH[width])
        neg, pos = image_tables(s, lab, source)
        self._set_width(width)
        self._neg.append(neg)
        self._raw_sorted &= neg[1] is not None
        self._pos.append(pos)
        self._num_positive += int(pos[1].sum())
        self._num_negative += neg[0].size if neg[1] is None else int(neg[1].sum())
        self._maybe_compact()

    def merge(self, other: PixelMetrics) -> None:
        """Add the images of ``other`` (same protocol) as if they had been updated after ours."""
        if (other.protocol, other.smiyc_float16) != (self.protocol, self.smiyc_float16):
            raise UserError("cannot merge pixel metric states of different protocols")
        self._smiyc.extend(other._smiyc)
        if other._width:
            self._set_width(max(self._width, other._width))
            self._neg.extend((widen_keys(k, self._width), c) for k, c in other._neg)
            self._raw_sorted = False
            self._pos.extend((widen_keys(k, self._width), c) for k, c in other._pos)
        self._num_positive += other._num_positive
        self._num_negative += other._num_negative
        self._maybe_compact()

    def compute(self) -> PixelResult:
        """Metrics over every image seen so far."""
        if self.protocol == "smiyc":
            return smiyc_metrics(self._smiyc, self._num_positive, self._num_negative)
        if self._num_positive == 0:
            empty = np.zeros(0)
            return metrics_from_positive_grid(empty, empty, empty, empty, self._num_negative)
        keys, pos = self._positive_table()
        neg_at_least, neg_above = self._negative_counts(keys)
        neg_equal = neg_at_least - neg_above
        values = key_to_float(keys).astype(np.float64)
        return metrics_from_positive_grid(values, pos, neg_above, neg_equal, self._num_negative)

    def positive_counts(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Exact protocol: the distinct scores holding anomaly pixels, descending ``(V,)``, the
        anomaly pixels scoring at least each of them ``(V,)``, and the number of anomaly pixels."""
        if self._num_positive == 0:
            return np.zeros(0), np.zeros(0, np.int64), 0
        keys, pos = self._positive_table()
        return key_to_float(keys).astype(np.float64), np.cumsum(pos), self._num_positive

    def _positive_table(self) -> Table:
        keys, pos = merge_tables(self._pos)
        return keys[::-1], pos[::-1]

    def _negative_counts(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inlier pixels with key >= and > each query key (queries descending).

        The per-pixel (unsorted) tables are first merged into one sorted table, kept in the state
        so the work is not repeated; only the pixels scoring at least the lowest query are
        searched.
        """
        raw = [keys for keys, counts in self._neg if counts is None]
        if len(raw) > 1 or (raw and not self._raw_sorted):
            merged = np.concatenate(raw) if len(raw) > 1 else raw[0]
            self._neg = [table for table in self._neg if table[1] is not None]
            del raw
            merged.sort()
            self._neg.append((merged, None))
            self._raw_sorted = True
        lowest = query[-1]
        tables = []
        for keys, counts in self._neg:
            start = int(np.searchsorted(keys, lowest)) if counts is None else 0
            selected = slice(start, None) if counts is None else keys >= lowest
            tables.append((keys[selected], None if counts is None else counts[selected]))
        return count_at_least(tables, query)

    def _set_width(self, width: int) -> None:
        if width != self._width:
            self._neg = [(widen_keys(k, width), c) for k, c in self._neg]
            self._pos = [(widen_keys(k, width), c) for k, c in self._pos]
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
