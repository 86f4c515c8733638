"""Brute-force re-implementations of the reference metrics, written as plainly as possible (Python
loops over thresholds, bins, components and segments) for tiny inputs. The library is tested
against these, never against numbers it produced itself."""

from __future__ import annotations

import numpy as np


def valid_pixels(images):
    """Pooled (score, is_anomaly) lists over the non-void pixels of ``[(scores, labels), ...]``."""
    scores, positives = [], []
    for s, lab in images:
        for value, label in zip(np.ravel(s).tolist(), np.ravel(lab).tolist(), strict=True):
            if label != 255:
                scores.append(value)
                positives.append(label == 1)
    return scores, positives


def exact_curve(images):
    """(thresholds descending, TP, FP, P, N) with every distinct score a threshold (score >= t)."""
    scores, positives = valid_pixels(images)
    p = sum(positives)
    n = len(scores) - p
    thresholds = sorted(set(scores), reverse=True)
    tps, fps = [], []
    for t in thresholds:
        tps.append(sum(1 for s, y in zip(scores, positives, strict=True) if s >= t and y))
        fps.append(sum(1 for s, y in zip(scores, positives, strict=True) if s >= t and not y))
    return thresholds, tps, fps, p, n


def exact_metrics(images):
    """AP, AUROC, FPR95, best F1 and its threshold, by looping over the distinct thresholds."""
    thresholds, tps, fps, p, n = exact_curve(images)
    ap = 0.0
    previous_recall = 0.0
    auroc = 0.0
    previous = (0.0, 0.0)
    fpr95 = None
    best_f1, best_t = -1.0, None
    for t, tp, fp in zip(thresholds, tps, fps, strict=True):
        recall = tp / p
        ap += (recall - previous_recall) * (tp / (tp + fp))
        previous_recall = recall
        point = (fp / n if n else float("nan"), recall)
        auroc += (point[0] - previous[0]) * (point[1] + previous[1]) / 2
        previous = point
        if fpr95 is None and recall >= 0.95:
            fpr95 = point[0]
        f1 = 2 * tp / (2 * tp + fp + (p - tp))
        if f1 > best_f1:
            best_f1, best_t = f1, t
    return {"auprc": ap, "auroc": auroc, "fpr95": fpr95, "best_f1": best_f1, "best_f1_threshold": best_t}


def smiyc_metrics(images, float16=True):
    """SMIYC ``PixBinaryClass``: per-image quantile bins, pooled by sorting all bin thresholds;
    the best-F1 threshold read off the collapsed curve as the benchmark saves it."""
    all_thresholds, all_tp, all_fp = [], [], []
    p = n = 0
    for s, lab in images:
        s = np.asarray(s)
        if float16:
            s = s.astype(np.float16)
        pos = [v for v, y in zip(s.ravel(), np.ravel(lab), strict=True) if y == 1]
        neg = [v for v, y in zip(s.ravel(), np.ravel(lab), strict=True) if y == 0]
        p += len(pos)
        n += len(neg)
        if not pos and not neg:
            continue
        low, high = min(pos + neg), max(pos + neg)
        kind = s.dtype.type
        eps = max(kind(kind(high - low) * kind(0.01)), kind(0.01))
        edges = [float(kind(low - eps)), float(kind(high + eps))]
        for part in (pos, neg):
            if part:
                levels = np.linspace(0, 1, min(384, len(part)))
                edges += np.quantile(np.array(part, dtype=s.dtype), levels).tolist()
        edges = sorted(set(edges))
        pos, neg = [float(v) for v in pos], [float(v) for v in neg]
        for i in reversed(range(len(edges) - 1)):  # per image from the top bin down, as the benchmark lists them
            low, high = edges[i], edges[i + 1]
            last = i == len(edges) - 2

            def inside(v, low=low, high=high, last=last):
                return low <= v < high or (last and v == high)

            all_thresholds.append(low)
            all_tp.append(sum(1 for v in pos if inside(v)))
            all_fp.append(sum(1 for v in neg if inside(v)))
    thresholds = np.array(all_thresholds)
    order = np.argsort(thresholds)[::-1]
    rows = []
    tp = fp = 0.0
    for i in order:
        tp += all_tp[i]
        fp += all_fp[i]
        rows.append((thresholds[i], tp, fp))
    kept = [rows[0]]
    for i in range(len(rows) - 1):
        if rows[i][0] != rows[i + 1][0]:
            kept.append(rows[i])
    kept.append(rows[-1])
    if kept[0][1:] != (0.0, 0.0):
        kept.insert(0, (max(row[0] for row in kept) + 1, 0.0, 0.0))
    if kept[-1][1:] != (p, n):
        kept.append((max(row[0] for row in kept) - 1, float(p), float(n)))
    recall = [tp / p for _, tp, _ in kept]
    precision = [tp / (tp + fp) if tp + fp > 0 else 1.0 for _, tp, fp in kept]
    ap = sum((recall[i] - recall[i - 1]) * precision[i] for i in range(1, len(kept)))
    fpr = [fp / n for _, _, fp in kept]
    auroc = sum((fpr[i] - fpr[i - 1]) * (recall[i] + recall[i - 1]) / 2 for i in range(1, len(kept)))
    fpr95 = next((fpr[i] for i in range(len(kept)) if recall[i] >= 0.95), 1.0)
    f1 = [2 * tp / (2 * tp + fp + (p - tp)) for _, tp, fp in kept]
    best = max(range(len(f1)), key=lambda i: (f1[i], -i))
    return {"auprc": ap, "auroc": auroc, "fpr95": fpr95, "best_f1": f1[best], "best_f1_threshold": kept[best][0]}


def label_components(mask):
    """8-connected components by flood fill: an int map (0 background) and the count."""
    h, w = mask.shape
    ids = np.zeros((h, w), np.int64)
    count = 0
    for y in range(h):
        for x in range(w):
            if mask[y, x] and ids[y, x] == 0:
                count += 1
                stack = [(y, x)]
                ids[y, x] = count
                while stack:
                    cy, cx = stack.pop()
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and ids[ny, nx] == 0:
                                ids[ny, nx] = count
                                stack.append((ny, nx))
    return ids, count


def segeval_image(scores, labels, threshold, min_pred, min_gt):
    """SMIYC SegEval of one image: (sIoU per GT component, PPV per predicted component)."""
    labels = np.array(labels)
    predicted = (scores > scores.dtype.type(threshold)) & (labels != 255)
    gt_ids, num_gt = label_components(labels == 1)
    pred_ids, num_pred = label_components(predicted)
    for j in range(1, num_pred + 1):
        if np.sum(pred_ids == j) < min_pred:
            pred_ids[pred_ids == j] = 0
    for k in range(0, num_gt + 1):
        if np.sum(gt_ids == k) < min_gt:
            labels[gt_ids == k] = 255
    roi = labels != 255
    sious, ppvs = [], []
    for k in range(1, num_gt + 1):
        gt_k = (gt_ids == k) & roi
        if not gt_k.any():
            continue
        touching = {int(j) for j in pred_ids[gt_k] if j != 0}
        in_touching = np.isin(pred_ids, list(touching)) & roi
        intersection = np.sum(gt_k & in_touching)
        other_gt = (gt_ids != 0) & (gt_ids != k) & roi
        adjustment = np.sum(other_gt & in_touching)
        union = np.sum(in_touching) + np.sum(gt_k) - intersection - adjustment
        sious.append(intersection / union)
    for j in range(1, num_pred + 1):
        pred_j = (pred_ids == j) & roi
        if not pred_j.any():
            continue
        ppvs.append(np.sum(pred_j & (gt_ids != 0)) / np.sum(pred_j))
    return sious, ppvs


def segeval(images, threshold, min_pred, min_gt):
    """SMIYC SegEval over a dataset: mean sIoU, mean PPV, F1* (pooled counts)."""
    sious, ppvs = [], []
    counts = []
    for s, lab in images:
        image_sious, image_ppvs = segeval_image(s, lab, threshold, min_pred, min_gt)
        sious += image_sious
        ppvs += image_ppvs
        counts.append((image_sious, image_ppvs))
    f1s = []
    for t in np.linspace(0.25, 0.75, 11):
        tp = sum(1 for v in sious if v >= t)
        fn = sum(1 for v in sious if v < t)
        fp = sum(1 for v in ppvs if v < t)
        f1s.append(2 * tp / (2 * tp + fn + fp))
    return {"siou": float(np.mean(sious)), "ppv": float(np.mean(ppvs)), "f1_star": float(np.mean(f1s))}


def mdm_f1_curve(images, steps=1000):
    """F1 at t = i / steps over pooled valid pixels, with Maskomaly's zero-then-threshold rule."""
    curve = []
    for i in range(steps):
        tp = fp = fn = 0
        for s, lab in images:
            t = np.asarray(s).dtype.type(i / steps)
            for v, y in zip(np.ravel(s), np.ravel(lab), strict=True):
                if y == 255:
                    continue
                hit = v > 0 if i == 0 else v >= t
                tp += hit and y == 1
                fp += hit and y == 0
                fn += (not hit) and y == 1
        curve.append(0.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return curve


def longest_run_above(values, margin=0.7):
    """Longest run of consecutive values strictly above ``margin``."""
    best = current = 0
    for v in values:
        current = current + 1 if v > margin else 0
        best = max(best, current)
    return best


def panoptic_quality(images, categories, unknown_ids=()):
    """panopticapi PQ by looping over every (GT segment, predicted segment) pair with masks.

    ``images``: list of (gt_ids, gt_segments, pred_ids, pred_segments). Returns per group
    ``{"all"|"things"|"stuff"|"unknown": (pq, sq, rq, n)}``.
    """
    stats = {}

    def stat(cat):
        return stats.setdefault(cat, [0.0, 0, 0, 0])

    for gt_ids, gt_segments, pred_ids, pred_segments in images:
        gts = {}
        for seg in gt_segments:
            cat = -1 if seg["category_id"] in unknown_ids else seg["category_id"]
            gts[seg["id"]] = (cat, seg.get("iscrowd", 0), seg["area"])
        preds = {seg["id"]: seg["category_id"] for seg in pred_segments}
        matched_gt, matched_pred = set(), set()
        for g, (cat, crowd, area) in gts.items():
            for p, pcat in preds.items():
                if crowd or pcat != cat:
                    continue
                inter = int(np.sum((gt_ids == g) & (pred_ids == p)))
                if inter == 0:
                    continue
                pred_area = int(np.sum(pred_ids == p))
                on_void = int(np.sum((gt_ids == 0) & (pred_ids == p)))
                iou = inter / (pred_area + area - inter - on_void)
                if iou > 0.5:
                    stat(cat)[0] += iou
                    stat(cat)[1] += 1
                    matched_gt.add(g)
                    matched_pred.add(p)
        crowd_of = {}
        for g, (cat, crowd, _) in gts.items():
            if g in matched_gt:
                continue
            if crowd:
                crowd_of[cat] = g
            else:
                stat(cat)[3] += 1
        for p, pcat in preds.items():
            if p in matched_pred:
                continue
            pred_area = int(np.sum(pred_ids == p))
            ignored = int(np.sum((gt_ids == 0) & (pred_ids == p)))
            if pcat in crowd_of:
                ignored += int(np.sum((gt_ids == crowd_of[pcat]) & (pred_ids == p)))
            if ignored / pred_area > 0.5:
                continue
            stat(pcat)[2] += 1

    def average(cats):
        values = []
        for cat in cats:
            iou, tp, fp, fn = stats.get(cat, [0.0, 0, 0, 0])
            if tp + fp + fn == 0:
                continue
            values.append((iou / (tp + fp / 2 + fn / 2), iou / tp if tp else 0.0, tp / (tp + fp / 2 + fn / 2)))
        if not values:
            return None
        pq, sq, rq = (float(np.mean([v[i] for v in values])) for i in range(3))
        return pq, sq, rq, len(values)

    known = [c["id"] for c in categories if c["id"] not in unknown_ids]
    things = {c["id"] for c in categories if c["isthing"]}
    return {
        "all": average(known),
        "things": average([c for c in known if c in things]),
        "stuff": average([c for c in known if c not in things]),
        "unknown": average([-1]) if unknown_ids else None,
    }
