"""Options several commands share, parsed into the typed configs of the entry points.

An option that the requested tasks cannot use is refused with one line, never ignored; numbers are
checked here (a NaN threshold, a negative size) so that nothing starts with a value it cannot use.
"""

from __future__ import annotations

import argparse
import math

from mask2anomaly.errors import UserError
from mask2anomaly.inference.predictor import InputSize, parse_input_size


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
    parser.add_argument("--size", help="resize images to WIDTHxHEIGHT first, e.g. 1024x512")


def input_size(args: argparse.Namespace) -> InputSize:
    """The :class:`InputSize` of ``--short-side`` / ``--size``."""
    size = parse_input_size(args.size) if args.size is not None else None
    return InputSize(short_side=args.short_side, size=size)


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
    if args.mining is not None and "ops" not in tasks:
        raise UserError("--mining applies to --task ops")
    minings = tuple(split_list(args.mining, "--mining")) if args.mining is not None else ("paper",)
    return OpenSetOptions(
        threshold=parse_thresholds(args.threshold) if args.threshold is not None else None,
        calibration=args.calibration,
        cross_calibrate=cross,
        minings=minings,
    )


def refuse_unused(args: argparse.Namespace, tasks: tuple[str, ...], options: dict[str, str]) -> None:
    """Refuse ``--option`` given while its task (``options[option]``) is not requested."""
    for option, task in options.items():
        if getattr(args, option) is not None and task not in tasks:
            raise UserError(f"--{option.replace('_', '-')} applies to --task {task}, which was not requested")
