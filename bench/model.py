"""Forward latency of our mask transformer vs Hugging Face's Mask2Former, same weights, CPU.

Both models share one randomly initialised checkpoint (saved by HF, loaded by us), run in eval mode
under ``torch.inference_mode`` on the same 512x1024 input; the table reports the median of
``--repeats`` timed runs after one warm-up (the models take turns), and ours/HF. The GMA column runs
our model with global masked attention (separate weights) to show its overhead over masked attention.

    python bench/model.py [--height 512 --width 1024 --repeats 3 --threads 2]
"""

from __future__ import annotations

import tempfile

import timing
import torch
import transformers
from timing import interleaved_medians

from mask2anomaly import load_model
from mask2anomaly.models import MaskTransformer

STAGES = ["stage1", "stage2", "stage3", "stage4"]


def hf_config(kind: str) -> transformers.Mask2FormerConfig:
    if kind == "R50":
        backbone = transformers.ResNetConfig(
            depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck", out_features=STAGES
        )
    else:
        backbone = transformers.SwinConfig(
            embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, out_features=STAGES
        )
    return transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=19)


def main() -> None:
    parser = timing.parser(__doc__)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))
    rows = []
    for kind in ("R50", "Swin-T"):
        torch.manual_seed(0)
        hf = transformers.Mask2FormerForUniversalSegmentation(hf_config(kind)).eval()
        with tempfile.TemporaryDirectory() as tmp:
            hf.save_pretrained(tmp)
            ours = load_model(tmp)
        gma = MaskTransformer(ours.config.with_attention("global_masked")).eval()
        with torch.inference_mode():
            diff = (hf(x).masks_queries_logits - ours(x).mask_logits).abs().max().item()
            t_hf, t_ours, t_gma = interleaved_medians(
                [lambda hf=hf: hf(x), lambda ours=ours: ours(x), lambda gma=gma: gma(x)], args.repeats
            )
        rows.append((kind, t_hf, t_ours, t_gma, diff))
    print(f"input 1x3x{args.height}x{args.width}, {args.threads} threads, median of {args.repeats} runs")
    print("| backbone | HF masked (s) | ours masked (s) | ours/HF | ours GMA (s) | GMA/masked | max mask diff |")
    print("|---|---|---|---|---|---|---|")
    for kind, t_hf, t_ours, t_gma, diff in rows:
        ratio, overhead = t_ours / t_hf, t_gma / t_ours
        print(f"| {kind} | {t_hf:.3f} | {t_ours:.3f} | {ratio:.2f} | {t_gma:.3f} | {overhead:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
