"""``mask2anomaly select-queries``: Maskomaly's anomaly queries of a model, chosen on a validation set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mask2anomaly.cli.options import add_input_size, input_size
from mask2anomaly.io_utils import ensure_writable_file, write_text_atomic


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "select-queries",
        help=summary,
        description=(
            "Maskomaly accepts the masks of a few fixed queries that predict anomalies; those query indices "
            "belong to one checkpoint. This command finds them for MODEL as the authors do: the queries whose "
            "masks binarised at 0.9 overlap the anomalies of DATASET best (mean IoU over images with anomalies). "
            "Use the result with evaluate/predict --maskomaly-queries (the --json file, or the indices)."
        ),
    )
    parser.add_argument("--model", required=True, help="mask-transformer checkpoint")
    parser.add_argument("--dataset", required=True, metavar="NAME:PATH", help="validation set with anomaly labels")
    parser.add_argument("--top-k", type=int, default=4, help="number of queries (4 in the paper)")
    parser.add_argument("--max-images", type=int, default=0, help="use the first N images (0: all)")
    add_input_size(parser)
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the selection as JSON")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mask2anomaly.inference import open_model, select_queries

    if args.json is not None:
        ensure_writable_file(args.json, "--json ")
    predictor = open_model(args.model, args.device, input_size(args))
    selection = select_queries(predictor, args.dataset, max_images=args.max_images, top_k=args.top_k)
    queries = [int(q) for q in selection.queries]
    print(f"anomaly queries: {','.join(map(str, queries))} (from {selection.num_images} images with anomalies)")
    for q in queries:
        print(f"  query {q}: mean IoU {float(selection.mean_iou[q]):.4f}")
    if args.json is not None:
        payload = {
            "model": str(args.model),
            "queries": queries,
            "mean_iou": [float(v) for v in selection.mean_iou],
            "images": selection.num_images,
        }
        write_text_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    return 0
