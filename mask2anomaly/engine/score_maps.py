"""Metrics of anomaly score maps saved as files: ``<stem>.npy`` scores against ``<stem>.png`` labels.

Two passes over the files: the pixel metrics and MDM first, then the SMIYC component metrics at the
pooled best-F1 threshold (or a given one). Used by ``mask2anomaly evaluate-maps`` and by
``mask2anomaly evaluate``, which writes its maps and labels first, so both give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from mask2anomaly.errors import UserError
from mask2anomaly.metrics import ComponentMetrics, MaximalDetectionMargin, PixelMetrics


def pair_files(scores_dir: Path, labels_dir: Path) -> list[tuple[str, Path, Path]]:
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
    """A 2-D uint8 label map from a PNG (greyscale or palette)."""
    try:
        with Image.open(path) as image:
            labels = np.asarray(image)
    except OSError as err:
        raise UserError(f"{path}: cannot read the label PNG ({err})") from None
    if labels.ndim != 2:
        raise UserError(f"{path}: label PNG must be single-channel, got shape {labels.shape}")
    return labels


def iterate_pairs(pairs: list[tuple[str, Path, Path]]) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    for _, score_path, label_path in pairs:
        scores, labels = load_scores(score_path), load_labels(label_path)
        if scores.shape != labels.shape:
            raise UserError(f"{score_path}: shape {scores.shape} differs from {label_path} {labels.shape}")
        yield scores, labels, str(score_path)


def evaluate(pairs: list[tuple[str, Path, Path]], protocol: str, track: str, component_threshold: float | None) -> dict:
    """All metrics of the paired files as the JSON-ready dictionary of the command."""
    if component_threshold is not None and not math.isfinite(component_threshold):
        raise UserError(f"--component-threshold must be a finite number, got {component_threshold}")
    pixel = PixelMetrics(protocol)
    mdm = MaximalDetectionMargin()
    for scores, labels, source in iterate_pairs(pairs):
        pixel.update(scores, labels, source)
        mdm.update(scores, labels, source)
    pix = pixel.compute()
    margins = mdm.compute()
    threshold = pix.best_f1_threshold if component_threshold is None else component_threshold
    if math.isnan(threshold):
        nan = float("nan")
        component = {"siou": nan, "ppv": nan, "f1_star": nan, "threshold": nan}
    else:
        components = ComponentMetrics(threshold, track)
        for scores, labels, source in iterate_pairs(pairs):
            components.update(scores, labels, source)
        comp = components.compute()
        component = {"siou": comp.siou, "ppv": comp.ppv, "f1_star": comp.f1_star, "threshold": comp.threshold}
    return {
        "num_images": len(pairs),
        "pixel": {
            "auprc": pix.auprc,
            "fpr95": pix.fpr95,
            "auroc": pix.auroc,
            "best_f1": pix.best_f1,
            "best_f1_threshold": pix.best_f1_threshold,
        },
        "component": component,
        "mdm": margins.pooled,
        "mdm_image_mean": margins.image_mean,
    }


def json_safe(value: object) -> object:
    """NaN -> None (JSON null), recursively through dicts."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
