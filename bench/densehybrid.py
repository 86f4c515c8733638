"""DenseHybrid's costs, CPU: its head and score against the forward pass, and the flow's share of a
training step.

Inference: ESPNetv2 s=2.0 at ``--height x --width`` (its Cityscapes input size, 512 x 1024 by
default) without and with the dataset-posterior head, and the mask transformer of the shipped
synthetic model's shape at 256 x 512 without and with it, and the head alone on features of its
input's shape (the difference of two forward passes is within the machine's noise). Scores: MSP
alone from a fresh context, and MSP with ``densehybrid`` from one context (as the inference loop
scores several methods: the shared pieces are computed once); DenseHybrid's cost is the head plus
the difference of those two. Baseline: the forward pass without the head, measured in the same run
(interleaved). Target: head plus score <= 5% of the forward pass.

Training: one DenseHybrid step of ESPNetv2 s=2.0 on 8 crops of 192 x 384 (forward, the losses,
backward), and the flow's extra work for those 8 crops (the recipe's flow: 2 levels, 4 Glow blocks,
64 channels, 64-pixel patches: likelihood of 16 inlier patches, 8 samples, the border pass through
the model, backward), timed separately.

    python bench/densehybrid.py [--height 512 --width 1024 --repeats 3 --threads 2]
"""

from __future__ import annotations

import timing
import torch
import torch.nn.functional as F
from timing import interleaved_medians

from mask2anomaly.experiments.demo import SHIPPED_MODEL
from mask2anomaly.methods import ScoreContext, parse_method, score_methods
from mask2anomaly.models import MaskTransformer
from mask2anomaly.models.espnetv2 import ESPNetV2Config, ESPNetV2Segmentation
from mask2anomaly.models.loading import load_model
from mask2anomaly.training.config import FlowConfig
from mask2anomaly.training.flow import PatchFlow, border_term, patch_log_probs


def _rows(
    model: str, t_plain: float, t_with: float, t_head: float, t_msp: float, t_both: float
) -> list[tuple[str, float, str]]:
    extra = t_head + (t_both - t_msp)
    return [
        (f"{model} (baseline)", t_plain, "1.00"),
        ("forward with the head", t_with, f"{t_with / t_plain:.3f}"),
        ("the head alone, on its input features", t_head, f"{t_head / t_plain:.3f}"),
        ("msp alone", t_msp, f"{t_msp / t_plain:.3f}"),
        ("msp + densehybrid, one context", t_both, f"{t_both / t_plain:.3f}"),
        ("DenseHybrid's cost: the head + the score's increment", extra, f"{extra / t_plain:.1%}"),
    ]


def espnetv2_inference(height: int, width: int, repeats: int) -> list[tuple[str, float, str]]:
    plain = ESPNetV2Segmentation(ESPNetV2Config(dataset_head=False)).eval()
    headed = ESPNetV2Segmentation(ESPNetV2Config(dataset_head=True)).eval()
    headed.load_state_dict({**headed.state_dict(), **plain.state_dict()})
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    size = (height, width)
    methods = [parse_method("msp"), parse_method("densehybrid")]
    features = torch.randn(1, 2 * headed.config.decoder_width, height // 2, width // 2)
    assert headed.dataset_head is not None
    head = headed.dataset_head
    with torch.inference_mode():
        logits, dataset = headed.forward_dense(x)
        times = interleaved_medians(
            [
                lambda: plain(x),
                lambda: headed.forward_dense(x),
                lambda: F.interpolate(head(features), size=size, mode="bilinear", align_corners=True),
                lambda: score_methods(ScoreContext.from_logits(logits, size), methods[:1]),
                lambda: score_methods(ScoreContext.from_logits(logits, size, dataset_logits=dataset), methods),
            ],
            repeats,
        )
    return _rows(f"ESPNetv2 forward {width}x{height}", *times)


def mask_inference(repeats: int) -> list[tuple[str, float, str]]:
    shipped = load_model(SHIPPED_MODEL)
    headed_config = type(shipped.config)(**{**vars(shipped.config), "dataset_head": True})
    headed = MaskTransformer(headed_config, load_pretrained=False).eval()
    headed.load_state_dict({**headed.state_dict(), **shipped.state_dict()})
    x = torch.randn(1, 3, 256, 512, generator=torch.Generator().manual_seed(0))
    size = (256, 512)
    methods = [parse_method("msp"), parse_method("densehybrid")]
    features = torch.randn(1, headed.config.mask_dim, 64, 128)
    assert headed.dataset_head is not None
    head = headed.dataset_head
    with torch.inference_mode():
        output = headed(x)
        times = interleaved_medians(
            [
                lambda: shipped(x),
                lambda: headed(x),
                lambda: head(features),
                lambda: score_methods(ScoreContext.from_masks(output, size), methods[:1]),
                lambda: score_methods(ScoreContext.from_masks(output, size), methods),
            ],
            repeats,
        )
    return _rows("shipped mask transformer 512x256", *times)


def training_step(repeats: int) -> list[tuple[str, float, str]]:
    model = ESPNetV2Segmentation(ESPNetV2Config(dataset_head=True)).train()
    flow = PatchFlow(FlowConfig(), 64).train()
    images = torch.randn(8, 3, 192, 384, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 19, (8, 192, 384), generator=torch.Generator().manual_seed(1))
    negatives = torch.zeros(8, 192, 384, dtype=torch.bool)
    negatives[:, 40:100, 100:160] = True
    inliers = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(2))

    def model_step() -> None:
        model.zero_grad()
        logits, dataset = model.forward_dense(images)
        loss = F.cross_entropy(logits, labels) + 0.03 * torch.logsumexp(logits, 1)[negatives].mean()
        loss = loss + 0.3 * F.cross_entropy(dataset, negatives.long())
        loss.backward()

    def flow_work() -> None:
        flow.zero_grad()
        generator = torch.Generator().manual_seed(3)
        nll = flow.nll_per_dim(inliers, generator)
        samples = flow.sample(8, generator)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.eval()
        border = border_term(patch_log_probs(model, samples))
        model.train()
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        (nll + 0.1 * border).backward()

    t_model, t_flow = interleaved_medians([model_step, flow_work], repeats)
    return [
        ("ESPNetv2 DenseHybrid step, 8 crops 384x192 (baseline)", t_model, "1.00"),
        ("flow: likelihood, 8 samples, border pass, backward", t_flow, f"{t_flow / t_model:.2f}"),
    ]


def main() -> None:
    args = timing.parser(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = espnetv2_inference(args.height, args.width, args.repeats)
    rows += mask_inference(args.repeats)
    rows += training_step(args.repeats)
    print("| what | seconds | ratio to its baseline |")
    print("|---|---:|---:|")
    for name, seconds, ratio in rows:
        print(f"| {name} | {seconds:.4f} | {ratio} |")


if __name__ == "__main__":
    main()
