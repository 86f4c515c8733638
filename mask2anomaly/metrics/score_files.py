"""Metrics of anomaly score maps saved as files: ``<stem>.npy`` scores against ``<stem>.png`` labels.

Two passes over the files: the pixel metrics and MDM first, then the SMIYC component metrics at the
pooled best-F1 threshold (or a given one). Used by ``mask2anomaly evaluate-maps`` and by the
anomaly task of the inference loop, which writes its maps and labels first and evaluates exactly
the files it wrote, so both give the same numbers.

Reading and counting are the only work, and this module imports neither torch nor anything else
heavy. The images are split into contiguous halves counted by two threads (numpy, PIL and scipy
release the interpreter lock while they work), and the halves' states merged in image order, so
the result equals one thread's, the SMIYC protocol's tie order included. scipy's image module,
which only the second pass needs, is imported by a third thread during the first. (Keeping the
decoded labels for the second pass was measured slower than decoding them again: fresh memory
costs more than the decoding.)
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from mask2anomaly.errors import UserError
from mask2anomaly.metrics import ComponentMetrics, MaximalDetectionMargin, PixelMetrics
from mask2anomaly.metrics._common import check_labels
from mask2anomaly.metrics.pixel import PROTOCOLS, PixelResult

Pair = tuple[str, Path, Path]
State = TypeVar("State")


def pair_files(scores_dir: Path, labels_dir: Path) -> list[Pair]:
    """``(stem, score file, label file)`` for every stem, sorted; raise on unpaired stems."""
    for folder in (scores_dir, labels_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder")
    scores = {p.stem: p for p in scores_dir.glob("*.npy")}
    labels = {p.stem: p for p in labels_dir.glob("*.png")}
    for missing, where, have in (
        (set(scores) - set(labels), labels_dir, "labels"),
        (set(labels) - set(scores), scores_dir, "scores"),
    ):
        if missing:
            shown = ", ".join(sorted(missing)[:3]) + (" ..." if len(missing) > 3 else "")
            suffix = ".png" if have == "labels" else ".npy"
            raise UserError(f"{where}: no {have} file (<stem>{suffix}) for {len(missing)} stem(s): {shown}")
    if not scores:
        raise UserError(f"{scores_dir}: no <stem>.npy score maps")
    return [(stem, scores[stem], labels[stem]) for stem in sorted(scores)]


def load_scores(path: Path) -> np.ndarray:
    """A 2-D float score map from a ``.npy`` file."""
    try:
        scores = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read the score map ({err})") from None
    if scores.ndim != 2:
        raise UserError(f"{path}: score map must be 2-D (H, W), got shape {scores.shape}")
    return scores


def load_labels(path: Path) -> np.ndarray:
    """A 2-D uint8 label map (0 inlier, 1 anomaly, 255 void) from a PNG (greyscale or palette)."""
    try:
        with Image.open(path) as image:
            labels = np.asarray(image)
    except OSError as err:
        raise UserError(f"{path}: cannot read the label PNG ({err})") from None
    if labels.ndim != 2:
        raise UserError(f"{path}: label PNG must be single-channel, got shape {labels.shape}")
    return check_labels(labels, str(path))


def iterate_pairs(pairs: list[Pair]) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    """``(scores, labels, score file name)`` per pair."""
    for _, score_path, label_path in pairs:
        labels = load_labels(label_path)
        scores = load_scores(score_path)
        if scores.shape != labels.shape:
            raise UserError(f"{score_path}: shape {scores.shape} differs from {label_path} {labels.shape}")
        yield scores, labels, str(score_path)


def _halves(pairs: list[Pair]) -> list[list[Pair]]:
    workers = max(1, min(2, os.cpu_count() or 1, len(pairs)))
    size = math.ceil(len(pairs) / workers)
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


def _count(pairs: list[Pair], count: Callable[[list[Pair]], State]) -> list[State]:
    """``count`` applied to contiguous halves of ``pairs`` in two threads, results in order."""
    parts = _halves(pairs)
    if len(parts) == 1:
        return [count(parts[0])]
    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(count, parts))


def _pixel_dict(result: PixelResult) -> dict[str, float]:
    return {
        "auprc": result.auprc,
        "fpr95": result.fpr95,
        "auroc": result.auroc,
        "best_f1": result.best_f1,
        "best_f1_threshold": result.best_f1_threshold,
    }


def evaluate(
    pairs: list[Pair], protocol: str, track: str, component_threshold: float | None, also: tuple[str, ...] = ()
) -> dict:
    """All metrics of the paired files as the JSON-ready dictionary of the command.

    Args:
        pairs: ``(stem, score file, label file)`` of every image, in the order to count them.
        protocol: pixel-metric protocol of ``"pixel"`` (and of the component threshold).
        track: SMIYC component track.
        component_threshold: component threshold (default: the pooled best-F1 one).
        also: further protocols computed in the same pass, as ``"pixel_<protocol>"``.
    """
    if component_threshold is not None and not math.isfinite(component_threshold):
        raise UserError(f"--component-threshold must be a finite number, got {component_threshold}")
    for name in (protocol, *also):
        if name not in PROTOCOLS:
            raise UserError(f"unknown protocol {name!r} (expected one of {', '.join(PROTOCOLS)})")
    threading.Thread(target=importlib.import_module, args=("scipy.ndimage",), daemon=True).start()

    def first_pass(part: list[Pair]) -> tuple[list[PixelMetrics], MaximalDetectionMargin]:
        pixels, mdm = [PixelMetrics(name) for name in (protocol, *also)], MaximalDetectionMargin()
        for scores, labels, source in iterate_pairs(part):
            for pixel in pixels:
                pixel.update(scores, labels, source)
            mdm.update(scores, labels, source)
        for pixel in pixels:
            pixel.consolidate()
        return pixels, mdm

    states = _count(pairs, first_pass)
    pixels, mdm = states[0]
    for other_pixels, other_mdm in states[1:]:
        for pixel, other in zip(pixels, other_pixels, strict=True):
            pixel.merge(other)
        mdm.merge(other_mdm)
    pix, *others = (pixel.compute() for pixel in pixels)
    margins = mdm.compute()
    threshold = pix.best_f1_threshold if component_threshold is None else component_threshold
    if math.isnan(threshold):
        nan = float("nan")
        component = {"siou": nan, "ppv": nan, "f1_star": nan, "threshold": nan}
    else:

        def second_pass(part: list[Pair]) -> ComponentMetrics:
            components = ComponentMetrics(threshold, track)
            for scores, labels, source in iterate_pairs(part):
                if protocol == "smiyc":
                    scores = scores.astype(np.float16)
                components.update(scores, labels, source)
            return components

        parts = _count(pairs, second_pass)
        for other in parts[1:]:
            parts[0].merge(other)
        comp = parts[0].compute()
        component = {"siou": comp.siou, "ppv": comp.ppv, "f1_star": comp.f1_star, "threshold": comp.threshold}
    return {
        "num_images": len(pairs),
        "num_images_skipped": pix.num_skipped,
        "pixel": _pixel_dict(pix),
        **{f"pixel_{name}": _pixel_dict(result) for name, result in zip(also, others, strict=True)},
        "component": component,
        "mdm": margins.pooled,
        "mdm_image_mean": margins.image_mean,
    }
