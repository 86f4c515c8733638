"""``mask2anomaly predict``: anomaly maps, open-set semantic labels and open-set panoptic segments of
image files, for every requested task and method in one pass."""

from __future__ import annotations

import argparse
import sys
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


def add_parser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser(
        "predict",
        help=summary,
        description=(
            "Run MODEL on an image or every image of a folder, once per image, for every task of --task "
            "(several at once share the pass) and every method. anomaly: <stem>_<method>.npy (float32 scores at "
            "the image's size) and <stem>_<method>.jpg (heatmap over the image); oss: <stem>_<method>_oss.png "
            "(class ids, K = unknown) and a coloured copy, at each method's threshold; ops: "
            "<stem>_<mining>_panoptic.png and panoptic_<mining>.json. OUT/inputs.json maps output stems to "
            "input files (stems are made unique when file names collide)."
        ),
        epilog=f"methods: {', '.join(method_names())}",
    )
    parser.add_argument("--model", required=True, help="checkpoint (any format load_model reads) or KIND:PATH")
    parser.add_argument("--input", required=True, help="image file or folder")
    parser.add_argument("--out", required=True, help="output folder")
    add_methods(parser, "mask2anomaly")
    parser.add_argument(
        "--task", default="anomaly", help="comma-separated subset of anomaly,oss,ops (default: anomaly)"
    )
    add_input_size(parser)
    parser.add_argument("--unknown-category", type=int, help="ops: category id of unknown instances (default -1)")
    parser.add_argument("--strict", action="store_true", help="an unreadable image is fatal (default: skip it)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    add_open_set(parser, evaluate=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mask2anomaly.inference import PredictConfig, predict

    tasks = tuple(split_list(args.task, "--task"))
    refuse_unused(args, tasks, {"unknown_category": "ops"})
    config = PredictConfig(
        model=args.model,
        input=args.input,
        out=args.out,
        methods=methods_option(args),
        tasks=tasks,
        input_size=input_size(args),
        open_set=open_set_options(args, tasks),
        unknown_category=-1 if args.unknown_category is None else args.unknown_category,
        strict=args.strict,
        device=args.device,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict(config)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    skipped = f", skipped {len(result.skipped)} unreadable" if result.skipped else ""
    print(
        f"wrote {','.join(tasks)} outputs of {result.num_images} images to {args.out}{skipped} "
        f"({result.images_per_second:.2f} images/s)"
    )
    return 0
