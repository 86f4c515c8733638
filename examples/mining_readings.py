"""PQ of the unknown class under every reading of the paper's unknown-instance mining.

Paper 000, Sec. 6.3 leaves two words open: how a connected component "overlaps" a query mask, and
what the "average" stuff / thing entropy is. ``OpenSetPanoptic`` offers each defensible reading
(``overlap``: iou, coverage, soft; ``entropy``: normalised, mean, binary); this script scores all
nine combinations in one pass over a dataset with panoptic labels, through the one inference loop.

    python examples/mining_readings.py --model MODEL --dataset NAME:PATH [--components 3 --iterations 500]

On the demo's open-set panoptic split (written by ``make demo``)::

    python examples/mining_readings.py --model mask2anomaly/weights/synthetic_cpu.safetensors \
        --dataset "coco_panoptic:runs/demo/data/test/openset_panoptic/panoptic_test.json?unknown=synthetic"
"""

from __future__ import annotations

import argparse
import itertools

from mask2anomaly.inference.consumers.panoptic import Mining, PanopticMetrics
from mask2anomaly.inference.loop import run
from mask2anomaly.inference.predictor import open_model
from mask2anomaly.inference.sources import DatasetSource
from mask2anomaly.methods.open_set_panoptic import ENTROPY_READINGS, OVERLAP_READINGS, OpenSetPanoptic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True, help="NAME:PATH of a set with panoptic labels")
    parser.add_argument("--components", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--min-overlap", type=float, default=0.5)
    args = parser.parse_args()

    predictor = open_model(args.model)
    minings = [
        Mining(
            f"{overlap}/{entropy}",
            OpenSetPanoptic(
                num_components=args.components,
                iterations=args.iterations,
                min_overlap=args.min_overlap,
                overlap=overlap,
                entropy=entropy,
            ),
        )
        for overlap, entropy in itertools.product(OVERLAP_READINGS, ENTROPY_READINGS)
    ]
    metrics = PanopticMetrics(minings)
    result = run(DatasetSource(args.dataset), predictor, [], [metrics])
    print(f"{result.num_images} images; components {args.components}, iterations {args.iterations}")
    print("| overlap | entropy | PQ unknown | SQ unknown | RQ unknown | PQ known |")
    print("|---|---|---|---|---|---|")
    for key, summary in metrics.result().items():
        overlap, entropy = key.split("/")
        unknown = summary["unknown"]
        cells = (unknown["pq"], unknown["sq"], unknown["rq"], summary["all"]["pq"])
        print(f"| {overlap} | {entropy} | " + " | ".join(f"{100 * v:.2f}" for v in cells) + " |")


if __name__ == "__main__":
    main()
