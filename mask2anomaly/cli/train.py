"""``mask2anomaly train``: run a published recipe (or a YAML file), on one process or under torchrun."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from mask2anomaly import data as datasets
from mask2anomaly.errors import UserError
from mask2anomaly.io_utils import ensure_writable_dir
from mask2anomaly.training.config import RunConfig
from mask2anomaly.training.recipes import load_recipe, recipe_names


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "train",
        help=summary,
        description=(
            "Train with a recipe: a shipped name or a YAML file validated against the run configuration. "
            "Checkpoints (OUT/last.safetensors: weights, optimiser state, config and step) are written "
            "atomically every train.checkpoint_every steps and at the end; --resume continues exactly where "
            "the last one stopped, with the configuration the run saved (--max-steps may extend it). Under "
            "`torchrun --nproc_per_node N` the batch is split over N processes "
            "(gloo on CPU, NCCL on GPU) and the steps equal those of one process on the whole batch."
        ),
        epilog=f"shipped recipes: {', '.join(recipe_names())}",
    )
    parser.add_argument("--recipe", required=True, help="recipe name or YAML file")
    parser.add_argument(
        "--data",
        help="training data: NAME:PATH, a folder written by make-synthetic, or a folder in the layout of the "
        "recipe's training set",
    )
    parser.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    parser.add_argument("--max-steps", type=int, help="override optim.max_steps")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override any recipe field, e.g. optim.lr=1e-5"
    )
    parser.set_defaults(func=run)


def data_override(value: str, config: RunConfig) -> RunConfig:
    """``--data``: a ``NAME:PATH[?options]`` dataset, a folder written by ``make-synthetic`` (its
    Cityscapes-layout train / val splits and, when the recipe pastes outliers, its outlier pool), or
    any other folder read by the recipe's own training reader."""
    name, sep, _ = value.partition(":")
    if sep and name in datasets.READERS:
        return replace(config, data=replace(config.data, train=value))
    folder = Path(value)
    meta = folder / "meta.json"
    if meta.is_file():
        try:
            info = json.loads(meta.read_text())
        except ValueError:
            info = {}
        if isinstance(info, dict) and info.get("generator") == "mask2anomaly.data.synthetic":
            counts = info.get("counts", {})
            if not counts.get("train"):
                raise UserError(
                    f"--data {folder}: this synthetic benchmark has no training split (make-synthetic --train N)"
                )
            data = replace(
                config.data,
                train=f"cityscapes:{folder / 'cityscapes'}?split=train",
                val=f"cityscapes:{folder / 'cityscapes'}?split=val" if counts.get("val") else None,
            )
            if data.outlier_pool is not None and counts.get("outliers"):
                data = replace(data, outlier_pool=f"folder:{folder / 'outliers'}")
            return replace(config, data=data)
    if folder.is_dir():
        reader, _, rest = config.data.train.partition(":")
        options = rest.partition("?")[2]
        return replace(
            config, data=replace(config.data, train=f"{reader}:{folder}" + (f"?{options}" if options else ""))
        )
    raise UserError(
        f"--data {value!r}: expected NAME:PATH (names: {', '.join(sorted(datasets.READERS))}), a folder written by "
        "make-synthetic, or a folder in the layout of the recipe's training set"
    )


def run(args: argparse.Namespace) -> int:
    from mask2anomaly.training.trainer import train

    if args.max_steps is not None and args.max_steps < 1:
        raise UserError(f"--max-steps {args.max_steps}: expected at least 1")
    if args.resume and (args.set or args.data):
        raise UserError(
            "--resume continues the run with the configuration it saved; --set and --data cannot change it "
            "(only --max-steps may extend it)"
        )
    out = ensure_writable_dir(args.out, "--out ")
    overrides = list(args.set)
    if args.max_steps is not None:
        overrides.append(f"optim.max_steps={args.max_steps}")
    saved = out / "config.yaml"
    config = load_recipe(str(saved) if args.resume and saved.is_file() else args.recipe, overrides)
    if args.data:
        config = data_override(args.data, config)
    path = train(config, out, resume=args.resume, device=args.device)
    print(f"finished: {path}")
    return 0
