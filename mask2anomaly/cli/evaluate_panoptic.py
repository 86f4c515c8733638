"""``mask2anomaly evaluate-panoptic``: PQ / SQ / RQ of COCO panoptic predictions (panopticapi), with
EOPSN's unknown class when ``--unknown-categories`` is given."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from mask2anomaly.io_utils import ensure_writable_file, write_text_atomic
from mask2anomaly.metrics import evaluate_panoptic


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "evaluate-panoptic",
        help=summary,
        description=(
            "PQ, SQ and RQ (fractions in [0, 1]) exactly as panopticapi computes them, for all known "
            "categories, things and stuff, plus the unknown class (EOPSN protocol) when "
            "--unknown-categories is given."
        ),
    )
    parser.add_argument("--gt-json", required=True, type=Path, help="ground-truth panoptic JSON")
    parser.add_argument("--gt-dir", required=True, type=Path, help="folder of ground-truth PNGs")
    parser.add_argument("--pred-json", required=True, type=Path, help="predicted panoptic JSON")
    parser.add_argument("--pred-dir", required=True, type=Path, help="folder of predicted PNGs")
    parser.add_argument(
        "--unknown-categories",
        default="",
        metavar="A,B,...",
        help="comma-separated category names evaluated as the unknown class (id -1 in predictions)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the results as JSON")
    parser.set_defaults(func=run)


def _values(group: object) -> dict | None:
    if group is None:
        return None
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(group).items()}


def run(args: argparse.Namespace) -> int:
    if args.json is not None:
        ensure_writable_file(args.json, "--json ")
    unknown = [name.strip() for name in args.unknown_categories.split(",") if name.strip()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_panoptic(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, unknown)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    groups = {"all": result.all, "things": result.things, "stuff": result.stuff, "unknown": result.unknown}
    print(f"{'':<8}{'PQ':>9}{'SQ':>9}{'RQ':>9}{'N':>6}")
    for name, group in groups.items():
        if group is not None:
            print(f"{name:<8}{group.pq:9.4f}{group.sq:9.4f}{group.rq:9.4f}{group.n:6d}")
    if args.json is not None:
        payload = {name: _values(group) for name, group in groups.items()}
        write_text_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    return 0
