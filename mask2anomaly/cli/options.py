"""Options several commands share, parsed into the typed configs of the entry points.

An option that the requested tasks cannot use is refused with one line, never ignored; numbers are
checked here (a NaN threshold, a negative size) so that nothing starts with a value it cannot use.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from mask2anomaly.errors import UserError
from mask2anomaly.inference.predictor import InputSize, parse_input_size
from mask2anomaly.methods import AnomalyMethod, parse_method
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic


def split_list(text: str, option: str) -> list[str]:
    """The comma-separated items of ``text`` (spaces stripped); an empty list is an error."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UserError(f"{option} is empty: give at least one value")
    return items


def finite_float(text: str, option: str) -> float:
    """``text`` as a finite float."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{option} {text!r}: expected a number") from None
    if not math.isfinite(value):
        raise UserError(f"{option} {text}: expected a finite number")
    return value


def add_input_size(parser: argparse.ArgumentParser) -> None:
    """``--short-side`` and ``--size``."""
    parser.add_argument(
        "--short-side",
        type=int,
        help="resize images to this short side first (scores are resized back; default: the model's own "
        "training size, e.g. 1024x512 for the Cityscapes ESPNetv2, else the image's)",
    )
    parser.add_argument(
        "--size",
        help="resize images to WIDTHxHEIGHT first, e.g. 1024x512; 'image': every image at its own size "
        "(full resolution, even for a model trained at a fixed size)",
    )


def input_size(args: argparse.Namespace) -> InputSize:
    """The :class:`InputSize` of ``--short-side`` / ``--size``."""
    if args.size is not None and args.size.strip().lower() == "image":
        return InputSize(short_side=args.short_side, own=True)
    size = parse_input_size(args.size) if args.size is not None else None
    return InputSize(short_side=args.short_side, size=size)


def add_methods(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--methods`` and Maskomaly's ``--maskomaly-queries``."""
    if default is None:
        parser.add_argument("--methods", required=True, help="comma-separated method names (see below)")
    else:
        parser.add_argument("--methods", default=default, help=f"comma-separated (default: {default})")
    parser.add_argument(
        "--maskomaly-queries",
        metavar="A,B,C | FILE",
        help="maskomaly's anomaly queries for this model: indices, or the --json file of select-queries "
        "(default: the authors' 49,31,83,32, accepted only on their Swin-L Cityscapes model)",
    )


def read_query_indices(text: str) -> tuple[int, ...]:
    """``--maskomaly-queries``: comma-separated indices, or a ``select-queries --json`` file."""
    items = [item.strip() for item in text.split(",")]
    if all(item.isdigit() for item in items):
        return tuple(int(item) for item in items)
    path = Path(text)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"--maskomaly-queries {text}: neither indices (e.g. 3,17,42) nor an existing file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot read the query selection ({err})") from None
    queries = payload.get("queries") if isinstance(payload, dict) else None
    if not isinstance(queries, list) or not queries or not all(isinstance(q, int) and q >= 0 for q in queries):
        raise UserError(f"{path}: expected select-queries' JSON, a non-empty list of indices under 'queries'")
    return tuple(queries)


def methods_option(args: argparse.Namespace) -> tuple[str | AnomalyMethod, ...]:
    """``--methods`` as names, Maskomaly built with ``--maskomaly-queries`` when given."""
    names = tuple(split_list(args.methods, "--methods"))
    if args.maskomaly_queries is None:
        return names
    if not any(name.strip().split("+")[0] == "maskomaly" for name in names):
        raise UserError("--maskomaly-queries applies to the maskomaly method, which --methods does not request")
    queries = read_query_indices(args.maskomaly_queries)
    return tuple(
        parse_method(name, anomaly_queries=queries) if name.split("+")[0] == "maskomaly" else name for name in names
    )


def add_open_set(parser: argparse.ArgumentParser, evaluate: bool) -> None:
    """Thresholds and mining of the open-set tasks."""
    group = parser.add_argument_group(
        "open-set tasks",
        "oss: unknown where a method's score is above its threshold; ops: known segments plus mined unknown "
        "instances. Thresholds: one of --threshold, --calibration" + (", --cross-calibrate" if evaluate else ""),
    )
    group.add_argument(
        "--threshold",
        help="the score above which a pixel is unknown: one number for every method, or METHOD=VALUE,...",
    )
    group.add_argument(
        "--calibration", metavar="NAME:PATH", help="calibrate each method's threshold at TPR 95%% on this dataset"
    )
    if evaluate:
        group.add_argument(
            "--cross-calibrate",
            action="store_true",
            default=None,
            help="oss on two datasets (StreetHazards t5, t6): each thresholded at the other's TPR-95 threshold",
        )
    group.add_argument(
        "--mining", help="ops: unknown-instance mining, comma-separated of paper, rba, none (default: paper)"
    )
    group.add_argument(
        "--mining-components",
        type=int,
        help="ops, paper mining: largest connected components examined (paper: 2 / 2 / 3 for the 5 / 10 / 20%% "
        "COCO splits; default 3)",
    )
    group.add_argument(
        "--mining-iterations",
        type=int,
        help="ops, paper mining: label-propagation steps of the connected components (paper: 500, the default)",
    )
    group.add_argument(
        "--mining-overlap",
        help="ops, paper mining: how a component and a query mask overlap: iou (paper's words, default), "
        "coverage (fraction of the component covered) or soft (IoU with the soft mask)",
    )
    group.add_argument(
        "--mining-min-overlap", help="ops, paper mining: least overlap of a component with its mask (default 0.5)"
    )
    group.add_argument(
        "--mining-entropy",
        help="ops, paper mining: reading of the average stuff / thing entropy: normalised (default), mean or binary",
    )


def parse_thresholds(text: str) -> float | dict[str, float]:
    """``--threshold``: one finite number, or ``METHOD=VALUE,...``."""
    if "=" not in text:
        return finite_float(text, "--threshold")
    out = {}
    for item in split_list(text, "--threshold"):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--threshold {item!r}: expected METHOD=VALUE")
        out[name.strip()] = finite_float(value, f"--threshold {name.strip()}=")
    return out


def open_set_options(args: argparse.Namespace, tasks: tuple[str, ...]):
    """The :class:`~mask2anomaly.inference.OpenSetOptions` of the command line; thresholds and
    mining given without a task that uses them are refused."""
    from mask2anomaly.inference import OpenSetOptions

    cross = bool(getattr(args, "cross_calibrate", None))
    paper = {
        "num_components": args.mining_components,
        "iterations": args.mining_iterations,
        "overlap": args.mining_overlap,
        "min_overlap": None
        if args.mining_min_overlap is None
        else finite_float(args.mining_min_overlap, "--mining-min-overlap"),
        "entropy": args.mining_entropy,
    }
    given = {key: value for key, value in paper.items() if value is not None}
    if (args.mining is not None or given) and "ops" not in tasks:
        raise UserError("--mining and --mining-* apply to --task ops")
    minings = tuple(split_list(args.mining, "--mining")) if args.mining is not None else ("paper",)
    if given and "paper" not in minings:
        raise UserError("--mining-* set the paper mining, which --mining does not request")
    return OpenSetOptions(
        threshold=parse_thresholds(args.threshold) if args.threshold is not None else None,
        calibration=args.calibration,
        cross_calibrate=cross,
        minings=minings,
        panoptic=OpenSetPanoptic(**given),
    )


def refuse_unused(args: argparse.Namespace, tasks: tuple[str, ...], options: dict[str, str]) -> None:
    """Refuse ``--option`` given while its task (``options[option]``) is not requested."""
    for option, task in options.items():
        if getattr(args, option) is not None and task not in tasks:
            raise UserError(f"--{option.replace('_', '-')} applies to --task {task}, which was not requested")
