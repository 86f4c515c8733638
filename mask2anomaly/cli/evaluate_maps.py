"""``mask2anomaly evaluate-maps``: pixel, component and MDM metrics of saved anomaly score maps.

Scores are ``<stem>.npy`` (float16/float32 ``(H, W)``, higher = more anomalous), labels
``<stem>.png`` (0 inlier, 1 anomaly, 255 void). Two passes over the files: the pixel metrics and
MDM first, then the SMIYC component metrics at the pooled best-F1 threshold (or a given one).
Metrics that are undefined for the data are printed as ``nan`` (``null`` in the JSON) with a
warning line that says why.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from mask2anomaly.errors import UserError
from mask2anomaly.io_utils import write_text_atomic
from mask2anomaly.metrics import ComponentMetrics, MaximalDetectionMargin, PixelMetrics


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-maps",
        help="evaluate saved anomaly score maps against label PNGs",
        description=(
            "Pixel (AuPRC, FPR95, AUROC, best F1), component (SMIYC sIoU, PPV, F1*) and MDM metrics "
            "of score maps SCORES/<stem>.npy against labels LABELS/<stem>.png (0 inlier, 1 anomaly, "
            "255 void). Values are fractions in [0, 1]."
        ),
    )
    parser.add_argument("--scores", required=True, type=Path, help="folder of <stem>.npy score maps")
    parser.add_argument("--labels", required=True, type=Path, help="folder of <stem>.png label maps")
    parser.add_argument(
        "--protocol",
        choices=("exact", "smiyc"),
        default="exact",
        help="pixel metrics: every score a threshold (exact, default) or SMIYC's binned leaderboard code",
    )
    parser.add_argument(
        "--track",
        choices=("anomaly", "obstacle"),
        default="anomaly",
        help="SMIYC component size filters: anomaly (500/100 px, default) or obstacle (50/10 px)",
    )
    parser.add_argument(
        "--component-threshold",
        type=float,
        default=None,
        help="score threshold of the component metrics (default: the pooled best-F1 threshold)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the results as JSON")
    parser.set_defaults(func=run)


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


def _images(pairs: list[tuple[str, Path, Path]]) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
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
    for scores, labels, source in _images(pairs):
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
        for scores, labels, source in _images(pairs):
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


def _json_safe(value: object) -> object:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def format_table(results: dict, protocol: str, track: str) -> str:
    """The human-readable table printed by the command."""
    pix, comp = results["pixel"], results["component"]
    rows = [
        (f"pixel ({protocol})", ""),
        ("  AuPRC", pix["auprc"]),
        ("  FPR95", pix["fpr95"]),
        ("  AUROC", pix["auroc"]),
        ("  best F1", pix["best_f1"]),
        ("  best F1 threshold", pix["best_f1_threshold"]),
        (f"component ({track} track)", ""),
        ("  sIoU", comp["siou"]),
        ("  PPV", comp["ppv"]),
        ("  F1*", comp["f1_star"]),
        ("  threshold", comp["threshold"]),
        ("MDM (pooled)", results["mdm"]),
        ("MDM (image mean)", results["mdm_image_mean"]),
    ]
    lines = [f"images: {results['num_images']}"]
    for name, value in rows:
        lines.append(name if value == "" else f"{name:<26}{value:.6f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    pairs = pair_files(args.scores, args.labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = evaluate(pairs, args.protocol, args.track, args.component_threshold)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(format_table(results, args.protocol, args.track))
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(_json_safe(results), indent=2) + "\n")
    return 0
