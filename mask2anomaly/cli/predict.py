"""``mask2anomaly predict``: score images with one or several methods (or run open-set inference)."""

from __future__ import annotations

import argparse
import sys
import warnings

from mask2anomaly.methods import method_names


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "predict",
        help=summary,
        description=(
            "Run MODEL on an image or every image of a folder. --task anomaly writes <stem>_<method>.npy "
            "(float32 scores at the input resolution) and <stem>_<method>.png (heatmap over the image); "
            "--task oss writes <stem>_oss.png (class ids, K = unknown; needs --threshold); --task ops writes "
            "<stem>_panoptic.png and panoptic.json. The model sees each image at its own resolution (padded "
            "to a multiple of 32) unless --short-side resizes it first (the official Cityscapes setting is 1024)."
        ),
        epilog=f"methods: {', '.join(method_names())}",
    )
    parser.add_argument("--model", required=True, help="checkpoint (any format load_model reads) or KIND:PATH")
    parser.add_argument("--input", required=True, help="image file or folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--methods", default="mask2anomaly", help="comma-separated (default: mask2anomaly)")
    parser.add_argument("--task", choices=("anomaly", "oss", "ops"), default="anomaly")
    parser.add_argument("--short-side", type=int, help="resize to this short side first; outputs are resized back")
    parser.add_argument("--threshold", type=float, help="oss: unknown where score >= threshold; ops with rba mining")
    parser.add_argument("--mining", choices=("paper", "rba", "none"), default="paper", help="ops: unknown mining")
    parser.add_argument("--unknown-category", type=int, default=-1, help="ops: category id of unknown instances")
    parser.add_argument("--strict", action="store_true", help="an unreadable image is fatal (default: skip it)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mask2anomaly.engine.predict import predict

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = predict(
            args.model,
            args.input,
            args.out,
            [m.strip() for m in args.methods.split(",") if m.strip()],
            task=args.task,
            short_side=args.short_side,
            threshold=args.threshold,
            mining=args.mining,
            unknown_category=args.unknown_category,
            strict=args.strict,
            device=args.device,
        )
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(f"wrote {args.task} outputs of {len(written)} images to {args.out}")
    return 0
