"""``mask2anomaly select-queries``: Maskomaly's anomaly queries of a model, chosen on a validation set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mask2anomaly.engine.inference import open_model
from mask2anomaly.engine.query_selection import select_queries
from mask2anomaly.io_utils import write_text_atomic


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "select-queries",
        help=summary,
        description=(
            "Maskomaly accepts the masks of a few fixed queries that predict anomalies; those query indices "
            "belong to one checkpoint. This command finds them for MODEL as the authors do: the queries whose "
            "masks binarised at 0.9 overlap the anomalies of DATASET best (mean IoU over images with anomalies). "
            "Use the result with the method parameter anomaly_queries."
        ),
    )
    parser.add_argument("--model", required=True, help="mask-transformer checkpoint")
    parser.add_argument("--dataset", required=True, metavar="NAME:PATH", help="validation set with anomaly labels")
    parser.add_argument("--top-k", type=int, default=4, help="number of queries (4 in the paper)")
    parser.add_argument("--max-images", type=int, default=0, help="use the first N images (0: all)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the selection as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    selection = select_queries(open_model(args.model), args.dataset, args.max_images, args.top_k)
    queries = [int(q) for q in selection.queries]
    print(f"anomaly queries: {','.join(map(str, queries))} (from {selection.num_images} images with anomalies)")
    for q in queries:
        print(f"  query {q}: mean IoU {float(selection.mean_iou[q]):.4f}")
    if args.json is not None:
        payload = {
            "queries": queries,
            "mean_iou": [float(v) for v in selection.mean_iou],
            "images": selection.num_images,
        }
        write_text_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    return 0
