"""``mask2anomaly train``: run a published recipe (or a YAML file), on one process or under torchrun."""

from __future__ import annotations

import argparse
from dataclasses import replace

from mask2anomaly.training.recipes import load_recipe, recipe_names


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "train",
        help=summary,
        description=(
            "Train with a recipe: a shipped name or a YAML file validated against the run configuration. "
            "Checkpoints (OUT/last.safetensors: weights, optimiser state, config and step) are written "
            "atomically every train.checkpoint_every steps and at the end; --resume continues exactly where "
            "the last one stopped. Under `torchrun --nproc_per_node N` the batch is split over N processes "
            "(gloo on CPU, NCCL on GPU) and the steps equal those of one process on the whole batch."
        ),
        epilog=f"shipped recipes: {', '.join(recipe_names())}",
    )
    parser.add_argument("--recipe", required=True, help="recipe name or YAML file")
    parser.add_argument("--data", help="training data folder (replaces the path of the recipe's data.train)")
    parser.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    parser.add_argument("--max-steps", type=int, help="override optim.max_steps")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override any recipe field, e.g. optim.lr=1e-5"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mask2anomaly.training.trainer import train

    overrides = list(args.set)
    if args.max_steps is not None:
        overrides.append(f"optim.max_steps={args.max_steps}")
    config = load_recipe(args.recipe, overrides)
    if args.data:
        name = config.data.train.partition(":")[0]
        options = config.data.train.partition("?")[2]
        spec = f"{name}:{args.data}" + (f"?{options}" if options else "")
        config = replace(config, data=replace(config.data, train=spec))
    path = train(config, args.out, resume=args.resume, device=args.device)
    print(f"finished: {path}")
    return 0
