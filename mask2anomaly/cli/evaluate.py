"""``mask2anomaly evaluate``: methods x datasets from one forward pass per image, with a report."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

from mask2anomaly.methods import method_names
from mask2anomaly.metrics.pixel import PROTOCOLS


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help=summary,
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
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="exact", help="pixel-metric protocol (see evaluate-maps --help)"
    )
    parser.add_argument("--track", choices=("anomaly", "obstacle"), default="anomaly", help="SMIYC component track")
    parser.add_argument(
        "--strict", action="store_true", help="an unreadable image is fatal (default: skip and list it)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    open_set = parser.add_argument_group(
        "open-set tasks", "--task oss: Open-IoU of the first method; --task ops: PQ with the unknown class"
    )
    open_set.add_argument("--task", choices=("anomaly", "oss", "ops"), default="anomaly")
    open_set.add_argument("--threshold", type=float, help="oss: unknown where score >= threshold; ops: RbA mining")
    open_set.add_argument("--calibration", metavar="NAME:PATH", help="oss: calibrate the TPR-95 threshold on this set")
    open_set.add_argument(
        "--cross-calibrate", action="store_true", help="oss: two datasets, each thresholded at the other's TPR-95"
    )
    open_set.add_argument("--mining", choices=("paper", "rba", "none"), default="paper", help="ops: unknown mining")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.task == "oss":
        from mask2anomaly.engine.open_set import evaluate_open_set_semantic

        result = evaluate_open_set_semantic(
            args.model,
            args.dataset,
            methods[0],
            args.out,
            args.threshold,
            args.calibration,
            args.cross_calibrate,
            args.short_side,
            args.max_images,
            args.device or "cpu",
        )
        print(json.dumps(result, indent=2))
        return 0
    if args.task == "ops":
        from mask2anomaly.engine.open_set import evaluate_open_panoptic

        result = evaluate_open_panoptic(
            args.model,
            args.dataset,
            args.out,
            args.mining,
            methods[0],
            args.threshold,
            args.max_images,
            args.device or "cpu",
        )
        print(json.dumps(result, indent=2))
        return 0
    from mask2anomaly.engine.evaluate import evaluate

    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = evaluate(
            args.model,
            args.dataset,
            methods,
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
        images = sum(next(iter(by_method.values()))["num_images"] for by_method in results.values())
        seconds = time.perf_counter() - started
        print(f"{images} images in {seconds:.1f} s ({images / seconds:.2f} images/s, inference and metrics)")
        print(f"wrote {args.out}/metrics.json, results.md, report.html")
    return 0


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.2f}"
