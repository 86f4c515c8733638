"""Cost of the scoring methods relative to the forward pass of a Mask2Former-size model, CPU.

The model is ``MaskTransformer(ModelConfig(dataset_head=True))`` (ResNet-50, 100 queries, 19
classes, DenseHybrid's head) with random weights, in eval mode under ``torch.inference_mode``, on
one ``--height x --width`` image. Each method is timed on the same forward output with a fresh
:class:`ScoreContext` per run (so it pays for the upsampling and the marginal itself); "all
methods" scores every registered name from one context with ``score_methods``, sharing those
pieces. The flipped forward pass of ``+tta`` is computed once beforehand and not charged to the
methods (it is a second forward pass). Random weights give no confident query, so refinement is
also timed on an output whose first 20 queries are made confident stuff classes.
Times are medians of ``--repeats`` runs after a warm-up; the ratio is to the forward time, timed
before and after the methods (the machine's load changes). Baseline row: the same marginal computed
the direct way (whole-image upsampling, sigmoid, einsum), as the reference code does.

    python bench/methods.py [--height 512 --width 1024 --repeats 3 --threads 2]
"""

from __future__ import annotations

import timing
import torch
from timing import median_seconds

from mask2anomaly.methods import ScoreContext, method_names, parse_method, score_methods
from mask2anomaly.models import MaskTransformer, MaskTransformerOutput, ModelConfig
from mask2anomaly.models.postprocess import semantic_marginal


def main() -> None:
    parser = timing.parser(__doc__)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MaskTransformer(ModelConfig(dataset_head=True)).eval()
    x = torch.randn(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))
    size = (args.height, args.width)
    with torch.inference_mode():
        t_forward = median_seconds(lambda: model(x), args.repeats)
        output, flipped = model(x), model(x.flip(-1))
        confident = output.class_logits.clone()
        confident[:, :20] = -10.0
        confident[:, torch.arange(20), 2 + torch.arange(20) % 9] = 10.0  # building .. sky, p > 0.99
        stuffy = MaskTransformerOutput(confident, output.mask_logits)
        names = method_names()
        methods = [parse_method(n) for n in names]
        rows: list[tuple[str, float]] = []

        def all_methods() -> dict[str, torch.Tensor]:
            return score_methods(ScoreContext.from_masks(output, size, flipped), methods)

        rows.append(("all methods, one shared context", median_seconds(all_methods, args.repeats)))
        for name, method in zip(names, methods, strict=True):
            rows.append(
                (name, median_seconds(lambda m=method: m(ScoreContext.from_masks(output, size, flipped)), args.repeats))
            )
        direct = (
            "direct marginal + max (interpolate, sigmoid, einsum)",
            median_seconds(lambda: 1 - semantic_marginal(output, size).amax(1), args.repeats),
        )
        rows.insert(0, direct)
        refine = parse_method("mask2anomaly+refine")
        rows.append(
            (
                "mask2anomaly+refine, 20 confident stuff queries",
                median_seconds(lambda: refine(ScoreContext.from_masks(stuffy, size)), args.repeats),
            )
        )
        t_forward_after = median_seconds(lambda: model(x), args.repeats)
    print(f"input 1x3x{args.height}x{args.width}, {args.threads} threads, median of {args.repeats} runs")
    t_forward = 0.5 * (t_forward + t_forward_after)
    print(f"forward pass: {t_forward:.3f} s (mean of the medians before and after the methods)")
    print("| methods | time (s) | / forward |")
    print("|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {100 * t / t_forward:.1f}% |")


if __name__ == "__main__":
    main()
