"""``mask2anomaly make-synthetic``: write the synthetic street-scene benchmark to a folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mask2anomaly.data.synthetic import parse_size, write_benchmark
from mask2anomaly.errors import UserError
from mask2anomaly.io_utils import ensure_writable_dir


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "make-synthetic",
        help=summary,
        description=(
            "Generate the synthetic street-scene benchmark (deterministic per seed) in the Cityscapes "
            "layout (train/val), the validation layout (anomaly test split), an open-set semantic and an "
            "open-set panoptic split, plus an AnomalyMix outlier pool."
        ),
    )
    parser.add_argument("out", type=Path, help="output folder (must be new or empty)")
    parser.add_argument("--train", type=int, default=500, help="training images (default 500)")
    parser.add_argument("--val", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--test", type=int, default=100, help="anomaly test images (default 100)")
    parser.add_argument("--outliers", type=int, default=300, help="AnomalyMix outlier cut-outs (default 300)")
    parser.add_argument("--size", default="256x512", help="image size HxW (default 256x512)")
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("train", "val", "test", "outliers"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} must be >= 0")
    size = parse_size(args.size)
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"{args.out}: is a file, expected a new or empty folder")
    if args.out.is_dir() and any(args.out.iterdir()):
        raise UserError(f"{args.out}: folder exists and is not empty; choose a new output folder")
    ensure_writable_dir(args.out, "")
    start = time.perf_counter()
    meta = write_benchmark(
        args.out,
        train=args.train,
        val=args.val,
        test=args.test,
        outliers=args.outliers,
        size=size,
        seed=args.seed,
    )
    counts = ", ".join(f"{k} {v}" for k, v in meta["counts"].items())
    print(f"wrote {args.out} ({counts}) in {time.perf_counter() - start:.1f} s")
    return 0
