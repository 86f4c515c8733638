"""``mask2anomaly evaluate``: methods x datasets from one forward pass per image, with a report."""

from __future__ import annotations

import argparse
import sys
import warnings

from mask2anomaly.methods import method_names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate anomaly methods of a model on datasets; write metrics.json, results.md, report.html",
        description=(
            "Score every image of every dataset once with MODEL and every method, write the score maps "
            "(OUT/maps/<dataset>/<method>/<stem>.npy), compute the benchmark metrics (pixel AuPRC / FPR95 / "
            "AUROC, SMIYC components, MDM) exactly as `evaluate-maps` does, and write OUT/metrics.json, "
            "OUT/results.md and OUT/report.html (table, PR and ROC curves, example heatmaps). Under "
            "`torchrun --nproc_per_node N` the images are split over N processes; the result is the same."
        ),
        epilog=f"methods: {', '.join(method_names())}",
    )
    parser.add_argument("--model", required=True, help="checkpoint (any format load_model reads) or KIND:PATH")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME:PATH", help="repeatable")
    parser.add_argument("--methods", required=True, help="comma-separated, e.g. msp,mask2anomaly+refine")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--short-side", type=int, help="resize images to this short side first (scores resized back)")
    parser.add_argument("--max-images", type=int, default=0, help="evaluate the first N images per dataset (0: all)")
    parser.add_argument("--examples", type=int, default=3, help="example images per dataset in the report")
    parser.add_argument("--protocol", choices=("exact", "smiyc"), default="exact", help="pixel-metric protocol")
    parser.add_argument("--track", choices=("anomaly", "obstacle"), default="anomaly", help="SMIYC component track")
    parser.add_argument(
        "--strict", action="store_true", help="an unreadable image is fatal (default: skip and list it)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mask2anomaly.engine.evaluate import evaluate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = evaluate(
            args.model,
            args.dataset,
            [m.strip() for m in args.methods.split(",") if m.strip()],
            args.out,
            short_side=args.short_side,
            strict=args.strict,
            max_images=args.max_images,
            num_examples=args.examples,
            protocol=args.protocol,
            track=args.track,
            device=args.device,
        )
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    for dataset, by_method in results.items():
        for method, metrics in by_method.items():
            pixel = metrics["pixel"]
            print(
                f"{dataset:<28} {method:<26} AuPRC {_fmt(pixel['auprc'])}  FPR95 {_fmt(pixel['fpr95'])}  "
                f"AUROC {_fmt(pixel['auroc'])}"
            )
    if results:
        print(f"wrote {args.out}/metrics.json, results.md, report.html")
    return 0


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.2f}"
