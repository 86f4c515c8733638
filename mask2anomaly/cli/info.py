"""``mask2anomaly info MODEL``: what a checkpoint contains."""

from __future__ import annotations

import argparse
import json

from mask2anomaly.config_utils import to_dict
from mask2anomaly.models.loading import load_model


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "info",
        help=summary,
        description="Load MODEL (any supported format) and print its configuration and parameter counts.",
    )
    parser.add_argument("model", help="checkpoint file or directory")
    parser.add_argument("--json", action="store_true", help="print the configuration as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    if args.json:
        print(json.dumps(to_dict(model.config), indent=2))
        return 0
    config = model.config
    print(f"backbone          {config.backbone.name}")
    print(f"attention         {config.attention}")
    print(
        f"classes           {config.num_classes}"
        + (f" ({', '.join(config.class_names)})" if config.class_names else "")
    )
    print(f"queries           {config.num_queries}")
    print(f"decoder layers    {config.num_decoder_layers}")
    for name in ("backbone", "pixel_decoder", "decoder"):
        count = sum(p.numel() for p in getattr(model, name).parameters())
        print(f"{name + ' params':<18}{count:,}")
    return 0
