"""Speed of the training losses at the paper's stage-1 and stage-2 sizes, on this machine's CPU.

Synthetic predictions and targets shaped like a Cityscapes crop (380x760 labels, stride-4 masks,
19 classes, 100 queries, 9 decoder layers + the query initialisation = 10 supervised predictions,
12544 points per mask) are pushed through ``SetCriterion`` (matching of every prediction, then
the losses) and ``outlier_loss`` (contrastive, final + every intermediate prediction); forward and
backward are timed separately, median over ``--repeats`` runs.

    nice python bench/losses.py [--batch 2 --targets 12 --repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mask2anomaly.losses import HungarianMatcher, OutlierLossConfig, SetCriterion, outlier_loss
from mask2anomaly.models.output import MaskPrediction, MaskTransformerOutput

HEIGHT, WIDTH = 380, 760
NUM_CLASSES, NUM_QUERIES, NUM_PREDICTIONS = 19, 100, 10


def make_inputs(batch: int, targets: int, seed: int = 0):
    """Leaf predictions (requiring grad) and per-image targets with ``targets`` random-blob masks."""
    gen = torch.Generator().manual_seed(seed)
    size = (HEIGHT // 4, WIDTH // 4)

    def prediction():
        class_logits = torch.randn(batch, NUM_QUERIES, NUM_CLASSES + 1, generator=gen).requires_grad_()
        mask_logits = torch.randn(batch, NUM_QUERIES, *size, generator=gen).requires_grad_()
        return class_logits, mask_logits

    layers = [prediction() for _ in range(NUM_PREDICTIONS)]
    output = MaskTransformerOutput(*layers[-1], aux=tuple(MaskPrediction(*layer) for layer in layers[:-1]))
    segments = torch.randint(0, targets, (batch, HEIGHT, WIDTH), generator=gen)
    target_list = [
        {
            "labels": torch.randperm(NUM_CLASSES, generator=gen)[:targets],
            "masks": segments[b] == torch.arange(targets)[:, None, None],
        }
        for b in range(batch)
    ]
    outlier = torch.zeros(batch, HEIGHT, WIDTH, dtype=torch.bool)
    outlier[:, 100:180, 300:420] = True
    return output, target_list, outlier


def time_it(forward, repeats: int) -> tuple[float, float]:
    """Median forward and backward wall time in seconds."""
    forward_times, backward_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        total = forward()
        middle = time.perf_counter()
        total.backward()
        forward_times.append(middle - start)
        backward_times.append(time.perf_counter() - middle)
    return statistics.median(forward_times), statistics.median(backward_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--targets", type=int, default=12, help="ground-truth segments per image")
    parser.add_argument("--points", type=int, default=12544)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    output, targets, outlier = make_inputs(args.batch, args.targets)
    criterion = SetCriterion(NUM_CLASSES, HungarianMatcher(num_points=args.points), num_points=args.points)
    generator = torch.Generator().manual_seed(0)
    set_fw, set_bw = time_it(lambda: criterion(output, targets, generator).total, args.repeats)
    config = OutlierLossConfig(variant="corrected")
    out_fw, out_bw = time_it(lambda: outlier_loss(output, outlier, config).total, args.repeats)
    print(
        f"batch {args.batch}, {NUM_PREDICTIONS} predictions x {NUM_QUERIES} queries, masks "
        f"{HEIGHT // 4}x{WIDTH // 4}, labels {HEIGHT}x{WIDTH}, {args.targets} targets/image, {args.points} points"
    )
    print(f"SetCriterion   forward {set_fw:6.2f} s   backward {set_bw:6.2f} s")
    print(f"outlier_loss   forward {out_fw:6.2f} s   backward {out_bw:6.2f} s")


if __name__ == "__main__":
    main()
