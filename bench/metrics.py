"""Speed and peak memory of the metrics on 20 synthetic 1024x2048 images with blob anomalies.

Pixel metrics: our exact streaming metrics (``update`` per image, then ``compute``) against
scikit-learn's ``average_precision_score`` + ``roc_curve`` on the pooled valid pixels, in the same
run, with the same images held in memory beforehand (so neither side is charged for them; the
pooled arrays sklearn needs are charged to sklearn). Times are wall-clock (ours: median of three
runs, sklearn: one run, as it takes half a minute); peak memory is measured in a separate run with
``tracemalloc`` (numpy reports its buffers to it). Our float16 and SMIYC-protocol paths are timed
too.

Component metrics: ours against a straightforward loop over components with one full-image mask
per component (the way SMIYC's code computes them), on images with ~10 and ~1000 anomalies. The
loop baseline runs on the first ``--baseline-images`` images only (it needs seconds per image).

Whole process: the same images written as ``<stem>.npy`` (float32) and ``<stem>.png``, and
``mask2anomaly evaluate-maps`` run on them as a new process (start-up, reading, pixel metrics,
components and MDM; median of ``--process-repeats`` runs), against the sklearn time above; and
the same work in this process (``score_maps.evaluate``). Peak memory of the process is its
maximum resident set size.

    nice python bench/metrics.py [--images 20 --baseline-images 2 --process-repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_curve

from mask2anomaly.io_utils import save_npy_atomic, save_png_atomic
from mask2anomaly.metrics import ComponentMetrics, PixelMetrics
from mask2anomaly.metrics.component import SIOU_THRESHOLDS, TRACK_SIZES
from mask2anomaly.metrics.score_files import evaluate, pair_files

HEIGHT, WIDTH = 1024, 2048
COMPONENT_THRESHOLD = 0.5


def make_image(seed: int, num_blobs: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic float32 scores and uint8 labels: ``num_blobs`` elliptic anomalies on noise,
    a void band at the top, anomaly scores high on a slightly shifted copy of each blob."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    scores = rng.random((HEIGHT, WIDTH), dtype=np.float32) * np.float32(0.45)
    radius_range = (20, 60) if num_blobs <= 20 else (5, 9)
    for _ in range(num_blobs):
        ry, rx = rng.integers(*radius_range, size=2)
        cy, cx = rng.integers(80 + ry, HEIGHT - ry), rng.integers(rx, WIDTH - rx - 3)
        yy, xx = np.ogrid[-ry : ry + 1, -rx : rx + 1]
        blob = (yy / ry) ** 2 + (xx / rx) ** 2 <= 1
        window = labels[cy - ry : cy + ry + 1, cx - rx : cx + rx + 1]
        window[blob] = 1
        shifted = scores[cy - ry : cy + ry + 1, cx - rx + 2 : cx + rx + 3]
        shifted[blob] = rng.uniform(0.4, 1.0, size=int(blob.sum())).astype(np.float32)
    labels[:64] = 255
    return scores, labels


def measure(fn: Callable[[], object], repeats: int = 1) -> tuple[float, float, object]:
    """Median wall time (s) over ``repeats`` runs, tracemalloc peak (MB) of one more run, and the
    result of ``fn()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return float(np.median(times)), peak, result


def ours_pixel(images, protocol="exact", dtype=None):
    metric = PixelMetrics(protocol)
    for scores, labels in images:
        metric.update(scores if dtype is None else scores.astype(dtype), labels)
    return metric.compute()


def sklearn_pixel(images):
    scores = np.concatenate([s[lab != 255] for s, lab in images])
    labels = np.concatenate([lab[lab != 255] for _, lab in images])
    ap = average_precision_score(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return ap, fpr[np.argmax(tpr >= 0.95)], np.trapezoid(tpr, fpr)


def loop_components(scores, labels, threshold, min_pred, min_gt):
    """Per-component loop with full-image masks: the quadratic baseline."""
    structure = np.ones((3, 3), bool)
    predicted = (scores > threshold) & (labels != 255)
    gt_ids, num_gt = ndimage.label(labels == 1, structure)
    pred_ids, num_pred = ndimage.label(predicted, structure)
    for j in range(1, num_pred + 1):
        mask = pred_ids == j
        if mask.sum() < min_pred:
            pred_ids[mask] = 0
    labels = labels.copy()
    for k in range(num_gt + 1):
        mask = gt_ids == k
        if mask.sum() < min_gt:
            labels[mask] = 255
    roi = labels != 255
    sious, ppvs = [], []
    for k in range(1, num_gt + 1):
        gt_k = (gt_ids == k) & roi
        if not gt_k.any():
            continue
        touching = np.unique(pred_ids[gt_k])
        touching = touching[touching > 0]
        union_pred = np.isin(pred_ids, touching) & roi
        intersection = np.sum(gt_k & union_pred)
        adjustment = np.sum(union_pred & (gt_ids > 0) & ~gt_k)
        sious.append(intersection / (union_pred.sum() + gt_k.sum() - intersection - adjustment))
    for j in range(1, num_pred + 1):
        pred_j = (pred_ids == j) & roi
        if pred_j.any():
            ppvs.append(np.sum(pred_j & (gt_ids > 0)) / pred_j.sum())
    return np.array(sious), np.array(ppvs)


def loop_dataset(images, track):
    min_pred, min_gt = TRACK_SIZES[track]
    sious, ppvs = [], []
    for scores, labels in images:
        s, p = loop_components(scores, labels, COMPONENT_THRESHOLD, min_pred, min_gt)
        sious.append(s)
        ppvs.append(p)
    siou, ppv = np.concatenate(sious), np.concatenate(ppvs)
    f1 = [2 * np.sum(siou >= t) / (2 * np.sum(siou >= t) + np.sum(siou < t) + np.sum(ppv < t)) for t in SIOU_THRESHOLDS]
    return float(np.mean(siou)), float(np.mean(ppv)), float(np.mean(f1))


def ours_components(images, track):
    metric = ComponentMetrics(COMPONENT_THRESHOLD, track)
    for scores, labels in images:
        metric.update(scores, labels)
    result = metric.compute()
    return result.siou, result.ppv, result.f1_star, result.num_gt


PEAK_OF_CHILD = """
import sys
from mask2anomaly.cli.main import main
code = main(sys.argv[1:])
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(int(peak.split()[1]) / 1024, file=sys.stderr)
sys.exit(code)
"""
"""Runs the command as ``python -m mask2anomaly`` does, then reports the process's own peak resident
memory (``VmHWM``, which does not count the pages of this big process that the fork shared)."""


def whole_process(images, repeats: int) -> tuple[float, float, float]:
    """Median seconds of ``mask2anomaly evaluate-maps`` as a new process on ``images`` written to
    files, its peak resident memory (MB), and the median seconds of the same work in-process."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i, (scores, labels) in enumerate(images):
            save_npy_atomic(root / "scores" / f"{i:04d}.npy", scores)
            save_png_atomic(root / "labels" / f"{i:04d}.png", labels)
        arguments = ["evaluate-maps", "--scores", str(root / "scores"), "--labels", str(root / "labels")]
        times, peaks = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", PEAK_OF_CHILD, *arguments], check=True, capture_output=True, text=True
            )
            times.append(time.perf_counter() - start)
            peaks.append(float(done.stderr.strip().splitlines()[-1]))
        peak = max(peaks)
        pairs = pair_files(root / "scores", root / "labels")
        inside = []
        for _ in range(repeats):
            start = time.perf_counter()
            evaluate(pairs, "exact", "anomaly", None)
            inside.append(time.perf_counter() - start)
    return statistics.median(times), peak, statistics.median(inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--baseline-images", type=int, default=2)
    parser.add_argument("--process-repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.images

    images = [make_image(seed, 10) for seed in range(n)]
    rows = []
    # The process runs first: the big allocations below keep the kernel's memory management busy
    # for a while afterwards, which measured a new process 1.5x slower than on a quiet machine.
    t_process, m_process, t_inside = whole_process(images, args.process_repeats)
    t_ours, m_ours, ours = measure(lambda: ours_pixel(images), repeats=3)
    t_sk, m_sk, (ap, fpr95, auroc) = measure(lambda: sklearn_pixel(images))
    assert abs(ours.auprc - ap) < 1e-9 and abs(ours.fpr95 - fpr95) < 1e-9 and abs(ours.auroc - auroc) < 1e-9
    t16, m16, _ = measure(lambda: ours_pixel(images, dtype=np.float16), repeats=3)
    t_smiyc, m_smiyc, _ = measure(lambda: ours_pixel(images, protocol="smiyc"), repeats=3)
    rows.append(("pixel, sklearn AP + roc_curve (pooled)", t_sk / n, m_sk, ""))
    gain = f"{t_sk / t_ours:.0f}x faster, {m_sk / m_ours:.1f}x less memory"
    rows.append(("pixel, ours exact, float32 scores", t_ours / n, m_ours, gain))
    rows.append(("pixel, ours exact, float16 scores", t16 / n, m16, "(includes the float32->float16 cast)"))
    rows.append(("pixel, ours smiyc protocol (binned)", t_smiyc / n, m_smiyc, ""))
    rows.append(
        (
            "evaluate-maps, whole process: start-up, reading, pixel + components + MDM",
            t_process / n,
            m_process,
            f"{t_sk / t_process:.1f}x faster than sklearn's pixel metrics alone (peak = resident set)",
        )
    )
    rows.append(("evaluate-maps work in-process (score_maps.evaluate)", t_inside / n, float("nan"), ""))

    for blobs, track in ((10, "anomaly"), (1200, "obstacle")):
        comp_images = images if blobs == 10 else [make_image(1000 + seed, blobs) for seed in range(n)]
        t_c, m_c, (siou, ppv, f1, num_gt) = measure(
            lambda imgs=comp_images, tr=track: ours_components(imgs, tr), repeats=3
        )
        subset = comp_images[: args.baseline_images]
        t_l, m_l, loop = measure(lambda imgs=subset, tr=track: loop_dataset(imgs, tr))
        check = ours_components(subset, track)[:3]
        assert np.allclose(check, loop, rtol=0, atol=1e-12), (check, loop)
        per_image = num_gt / n
        rows.append((f"components, loop baseline, ~{per_image:.0f} GT/img ({track})", t_l / len(subset), m_l, ""))
        rows.append(
            (
                f"components, ours, ~{per_image:.0f} GT/img ({track})",
                t_c / n,
                m_c,
                f"{(t_l / len(subset)) / (t_c / n):.0f}x faster; sIoU {siou:.3f} PPV {ppv:.3f} F1* {f1:.3f}",
            )
        )

    print(f"{n} images of {HEIGHT}x{WIDTH}; AuPRC {ours.auprc:.4f}, FPR95 {ours.fpr95:.4f}, AUROC {ours.auroc:.4f}")
    print("| what | s / image | peak MB | note |")
    print("|---|---:|---:|---|")
    for name, seconds, peak, note in rows:
        print(f"| {name} | {seconds:.4f} | {peak:.0f} | {note} |")


if __name__ == "__main__":
    main()
