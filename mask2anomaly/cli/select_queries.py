"""``mask2anomaly select-queries``: Maskomaly's anomaly queries of a model, chosen on a validation set."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from mask2anomaly import data as datasets
from mask2anomaly.engine.inference import open_model
from mask2anomaly.errors import UserError
from mask2anomaly.io_utils import write_text_atomic
from mask2anomaly.methods import ScoreContext, select_anomaly_queries


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "select-queries",
        help="choose Maskomaly's anomaly queries for a model on a validation set with anomalies",
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
    predictor = open_model(args.model)
    if not predictor.is_mask_model:
        raise UserError(f"{args.model}: query selection needs a mask transformer")
    reader = datasets.open_spec(args.dataset)
    count = len(reader) if args.max_images <= 0 else min(args.max_images, len(reader))

    def batches() -> Iterator[tuple[ScoreContext, torch.Tensor]]:
        for index in range(count):
            sample = reader[index]
            if sample.anomaly is None:
                raise UserError(f"{args.dataset}: the dataset has no anomaly labels")
            frame = predictor.context(sample.image, flip=False)
            labels = torch.from_numpy(sample.anomaly).long()
            height, width = frame.ctx.size
            labels = F.pad(labels, (0, width - labels.shape[1], 0, height - labels.shape[0]), value=255)
            yield frame.ctx, labels[None]

    selection = select_anomaly_queries(batches(), top_k=args.top_k)
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
