"""``mask2anomaly convert SRC DST``: rewrite any supported checkpoint in this package's format."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mask2anomaly.io_utils import ensure_writable_dir, ensure_writable_file
from mask2anomaly.models.loading import load_model, save_model


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "convert",
        help=summary,
        description=(
            "Read SRC (a Hugging Face Mask2Former directory, a detectron2 Mask2Former/Mask2Anomaly .pth/.pkl, "
            "or a mask2anomaly checkpoint), check that every weight fits the model, and write DST: a single "
            ".safetensors file with the model configuration in its metadata (or, if DST does not end in "
            ".safetensors, a directory with model.safetensors and config.json). The output is written atomically."
        ),
    )
    parser.add_argument("src", help="checkpoint to read")
    parser.add_argument("dst", help="where to write the converted checkpoint")
    parser.add_argument(
        "--attention",
        choices=("cross", "masked", "global_masked"),
        help="detectron2 files only: decoder attention, when the weights cannot tell (default: inferred)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        help="store the weights in this type (float16 halves the file; loading casts back to float32)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    destination = Path(args.dst)
    if destination.suffix == ".safetensors":
        ensure_writable_file(destination, "DST ")
    else:
        ensure_writable_dir(destination, "DST ")
    overrides = {"attention": args.attention} if args.attention else None
    model = load_model(args.src, overrides=overrides)
    save_model(model, args.dst, getattr(torch, args.dtype) if args.dtype else None)
    n = sum(p.numel() for p in model.state_dict().values())
    print(f"wrote {args.dst}: {model.config.backbone.name}, {model.config.attention} attention, {n:,} values")
    return 0
