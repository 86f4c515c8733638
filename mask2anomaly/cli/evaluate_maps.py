"""``mask2anomaly evaluate-maps``: pixel, component and MDM metrics of saved anomaly score maps.

Scores are ``<stem>.npy`` (float16/float32 ``(H, W)``, higher = more anomalous), labels
``<stem>.png`` (0 inlier, 1 anomaly, 255 void). Two passes over the files: the pixel metrics and
MDM first, then the SMIYC component metrics at the pooled best-F1 threshold (or a given one).
Metrics that are undefined for the data are printed as ``nan`` (``null`` in the JSON) with a
warning line that says why. This command imports neither torch nor the models.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from mask2anomaly.io_utils import ensure_writable_file, json_safe, write_text_atomic
from mask2anomaly.metrics.pixel import PROTOCOLS
from mask2anomaly.metrics.score_files import evaluate, pair_files


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "evaluate-maps",
        help=summary,
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
        choices=PROTOCOLS,
        default="exact",
        help=(
            "pixel metrics: exact (every score a threshold, pooled; equal to sklearn and the Fishyscapes code; "
            "default), smiyc (the SegmentMeIfYouCan leaderboard's binned code on float16 scores, and its "
            "component threshold), mask2anomaly (the official Mask2Anomaly evaluation: images without "
            "anomaly skipped, FPR95 interpolated at TPR 0.95 as ood_metrics does)"
        ),
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
    if results["num_images_skipped"]:
        lines.append(f"images skipped by the protocol (no anomaly pixel): {results['num_images_skipped']}")
    for name, value in rows:
        lines.append(name if value == "" else f"{name:<26}{value:.6f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.json is not None:
        ensure_writable_file(args.json, "--json ")
    pairs = pair_files(args.scores, args.labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = evaluate(pairs, args.protocol, args.track, args.component_threshold)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(format_table(results, args.protocol, args.track))
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(json_safe(results), indent=2) + "\n")
    return 0
