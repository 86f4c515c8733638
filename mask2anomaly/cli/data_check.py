"""``mask2anomaly data check``: count, pair, size-check and histogram a dataset's labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mask2anomaly import data
from mask2anomaly.io_utils import ensure_writable_file, write_text_atomic


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser("data", help=summary, description="Inspect datasets.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="verify a dataset's files and histogram its label values",
        description=(
            "Open a dataset, decode every sample, verify image/label pairing, sizes and label values, "
            "and count the pixels of every label value (anomaly map if the dataset has one, else the "
            "semantic map)."
        ),
    )
    check.add_argument(
        "--dataset",
        required=True,
        metavar="NAME:PATH",
        help=f"dataset name and path, options as NAME:PATH?key=value&... (names: {', '.join(sorted(data.READERS))})",
    )
    check.add_argument("--json", type=Path, metavar="OUT", help="also write the report as JSON to OUT")
    check.add_argument("--skip-bad", action="store_true", help="list bad files and continue instead of stopping")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.json is not None:
        ensure_writable_file(args.json, "--json ")
    reader = data.open_spec(args.dataset, skip_bad=args.skip_bad)
    report = reader.check(skip_bad=args.skip_bad)
    print(f"{args.dataset}: {report.num_images} images")
    total = sum(report.label_values.values()) or 1
    for value, count in sorted(report.label_values.items()):
        print(f"  label {value:>3}: {count:>12} px  {100 * count / total:6.2f} %")
    for problem in report.problems:
        print(f"  skipped: {problem}")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.problems else 0
