"""The ``mask2anomaly`` command: one sub-command per job.

Each sub-command lives in its own module of this package and exposes ``add_parser(subparsers)``
(which builds its argparse parser and sets ``func``) — the literal table below is the registry.
Errors that users can fix (bad files, bad options) are raised as :class:`UserError` and printed as
one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mask2anomaly.errors import UserError

COMMANDS: dict[str, str] = {
    "convert": "mask2anomaly.cli.convert",
    "info": "mask2anomaly.cli.info",
    "demo": "mask2anomaly.cli.demo",
    "ablate": "mask2anomaly.cli.ablate",
    "train": "mask2anomaly.cli.train",
    "evaluate": "mask2anomaly.cli.evaluate",
    "predict": "mask2anomaly.cli.predict",
    "select-queries": "mask2anomaly.cli.select_queries",
    "data": "mask2anomaly.cli.data_check",
    "make-synthetic": "mask2anomaly.cli.make_synthetic",
    "evaluate-maps": "mask2anomaly.cli.evaluate_maps",
    "evaluate-panoptic": "mask2anomaly.cli.evaluate_panoptic",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mask2anomaly",
        description=(
            "Anomaly segmentation, open-set semantic and open-set panoptic segmentation with mask "
            "transformers. Run `mask2anomaly COMMAND --help` for the options of one command."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"mask2anomaly {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mask2anomaly {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
