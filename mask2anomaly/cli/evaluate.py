"""``mask2anomaly evaluate``: tasks x methods x datasets from one forward pass per image, with a report."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from mask2anomaly.cli.options import (
    add_input_size,
    add_methods,
    add_open_set,
    input_size,
    methods_option,
    open_set_options,
    refuse_unused,
    split_list,
)
from mask2anomaly.methods import method_names
from mask2anomaly.metrics.pixel import PROTOCOLS

TASKS = ("anomaly", "oss", "ops")


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help=summary,
        description=(
            "Score every image of every dataset once with MODEL and every method, for every task of --task "
            "(anomaly, oss, ops; several at once share the pass). anomaly: the score maps "
            "(OUT/maps/<dataset>/<method>/<stem>.npy) and the benchmark metrics of exactly those files, as "
            "`evaluate-maps` computes them (pixel AuPRC / FPR95 / AUROC, SMIYC components, MDM). oss: mIoU and "
            "Open-mIoU, unknown where a method's score is above its threshold. ops: PQ with the unknown class. "
            "Writes OUT/metrics.json, OUT/results.md and OUT/report.html (tables, curves, examples). Under "
            "`torchrun --nproc_per_node N` the images are split over N processes; the result is the same."
        ),
        epilog=f"methods: {', '.join(method_names())}",
    )
    parser.add_argument("--model", required=True, help="checkpoint (any format load_model reads) or KIND:PATH")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME:PATH", help="repeatable")
    add_methods(parser, None)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--task", default="anomaly", help="comma-separated subset of anomaly,oss,ops (default: anomaly)"
    )
    add_input_size(parser)
    parser.add_argument("--max-images", type=int, default=0, help="evaluate the first N images per dataset (0: all)")
    parser.add_argument("--examples", type=int, default=3, help="example images per dataset in the report (default 3)")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, help="anomaly: pixel-metric protocol (default exact; see evaluate-maps --help)"
    )
    parser.add_argument(
        "--track", choices=("anomaly", "obstacle"), help="anomaly: SMIYC component track (default anomaly)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="an unreadable image is fatal (default: skip and list it)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    add_open_set(parser, evaluate=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mask2anomaly.inference import EvaluateConfig, evaluate

    tasks = tuple(split_list(args.task, "--task"))
    refuse_unused(args, tasks, {"protocol": "anomaly", "track": "anomaly"})
    config = EvaluateConfig(
        model=args.model,
        datasets=tuple(args.dataset),
        methods=methods_option(args),
        out=args.out,
        tasks=tasks,
        input_size=input_size(args),
        strict=args.strict,
        max_images=args.max_images,
        examples=args.examples,
        protocol=args.protocol or "exact",
        track=args.track or "anomaly",
        open_set=open_set_options(args, tasks),
        device=args.device,
    )
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        payload = evaluate(config)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if not payload:
        return 0
    images = 0
    for key, entry in payload["datasets"].items():
        if key == "cross_calibrated":
            continue
        images += entry["images"]
        for method, metrics in (entry.get("anomaly") or {}).items():
            pixel = metrics["pixel"]
            print(
                f"{key:<28} {method:<26} AuPRC {_fmt(pixel['auprc'])}  FPR95 {_fmt(pixel['fpr95'])}  "
                f"AUROC {_fmt(pixel['auroc'])}"
            )
        for method, metrics in (entry.get("open_set_semantic") or {}).items():
            print(f"{key:<28} {method:<26} mIoU {_fmt(metrics['miou'])}  Open-mIoU {_fmt(metrics['open_miou'])}")
        for mining, metrics in (entry.get("open_panoptic") or {}).items():
            unknown = (metrics.get("unknown") or {}).get("pq")
            print(f"{key:<28} {mining:<26} PQ {_fmt(metrics['all']['pq'])}  PQ unknown {_fmt(unknown)}")
        if entry["skipped"]:
            print(f"{key:<28} skipped {len(entry['skipped'])} image(s); see metrics.json")
    seconds = time.perf_counter() - started
    print(f"{images} images in {seconds:.1f} s ({images / seconds:.2f} images/s, inference and metrics)")
    print(f"wrote {args.out}/metrics.json, results.md, report.html")
    return 0


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.2f}"
