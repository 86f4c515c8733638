"""The ``mask2anomaly`` command: one sub-command per job.

Each sub-command lives in its own module of this package and exposes ``add_parser(subparsers,
summary)`` (which builds its argparse parser and sets ``func``); the literal table below is the
registry and holds each command's one-line summary. Only the module of the command being run is
imported, so a light command (``evaluate-maps``) never pays for torch. Errors that users can fix
(bad files, bad options) are raised as :class:`UserError` and printed as one line, never as a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mask2anomaly.errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "convert": (
        "mask2anomaly.cli.convert",
        "convert a Hugging Face / detectron2 checkpoint to a mask2anomaly .safetensors file",
    ),
    "info": ("mask2anomaly.cli.info", "print the architecture and parameter counts of a checkpoint"),
    "demo": (
        "mask2anomaly.cli.demo",
        "evaluate every method on generated street scenes (anomaly, open-set semantic and panoptic)",
    ),
    "ablate": (
        "mask2anomaly.cli.ablate",
        "train and score attention x contrastive loss x refinement on the synthetic benchmark",
    ),
    "train": ("mask2anomaly.cli.train", "train a model from a recipe (stage 1 or contrastive fine-tuning)"),
    "evaluate": (
        "mask2anomaly.cli.evaluate",
        "evaluate anomaly methods of a model on datasets; write metrics.json, results.md, report.html",
    ),
    "predict": (
        "mask2anomaly.cli.predict",
        "anomaly maps, open-set semantic labels or open-set panoptic segments of images",
    ),
    "select-queries": (
        "mask2anomaly.cli.select_queries",
        "choose Maskomaly's anomaly queries for a model on a validation set with anomalies",
    ),
    "data": ("mask2anomaly.cli.data_check", "inspect datasets"),
    "make-synthetic": ("mask2anomaly.cli.make_synthetic", "generate the synthetic street-scene benchmark"),
    "evaluate-maps": ("mask2anomaly.cli.evaluate_maps", "evaluate saved anomaly score maps against label PNGs"),
    "evaluate-panoptic": (
        "mask2anomaly.cli.evaluate_panoptic",
        "panoptic quality of COCO panoptic JSON + PNG predictions",
    ),
}


def requested_command(argv: list[str]) -> str | None:
    """The sub-command named on the command line (the first argument that is not an option)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command``'s module is imported for its options, the others only listed (all
    of them when ``command`` is None)."""
    parser = argparse.ArgumentParser(
        prog="mask2anomaly",
        description=(
            "Anomaly segmentation, open-set semantic and open-set panoptic segmentation with mask "
            "transformers. Run `mask2anomaly COMMAND --help` for the options of one command."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module_name).add_parser(sub, summary)
        else:
            sub.add_parser(name, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = requested_command(argv)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"mask2anomaly {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mask2anomaly {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"mask2anomaly {args.command}: the output pipe was closed", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
