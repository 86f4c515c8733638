"""Training-step speed of ours vs Hugging Face's Mask2Former (model + loss), same config and weights.

Both models start from one randomly initialised HF checkpoint (loaded by us), take the same batch of
synthetic street scenes with their per-class target masks, and run forward + loss + backward +
AdamW step; the models take turns, and the table gives the median seconds per step and
ours/HF. Ours uses its point-sampled losses with the same number of points as HF (12544).

    python bench/train.py [--height 384 --width 768 --batch 2 --repeats 3 --threads 2]
"""

from __future__ import annotations

import tempfile

import numpy as np
import timing
import torch
import transformers
from timing import interleaved_medians

from mask2anomaly import load_model
from mask2anomaly.data.synthetic import generate_scene
from mask2anomaly.models.preprocess import normalize_images
from mask2anomaly.training.config import RunConfig
from mask2anomaly.training.data import Batch
from mask2anomaly.training.trainer import Losses

STAGES = ["stage1", "stage2", "stage3", "stage4"]


def main() -> None:
    parser = timing.parser(__doc__, height=384, width=768)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backbone = transformers.ResNetConfig(
        depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck", out_features=STAGES
    )
    torch.manual_seed(0)
    hf = transformers.Mask2FormerForUniversalSegmentation(
        transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=19)
    ).train()
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        ours = load_model(tmp).train()
    config = RunConfig(model=ours.config)
    losses = Losses(config)

    scenes = [generate_scene("train", i, size=(args.height, args.width)) for i in range(args.batch)]
    images, _ = normalize_images([s.image for s in scenes])
    labels, masks = [], []
    for scene in scenes:
        classes = [c for c in np.unique(scene.train_ids).tolist() if c < 19]
        labels.append(torch.tensor(classes))
        masks.append(torch.from_numpy(np.stack([scene.train_ids == c for c in classes])))
    batch = Batch(
        images,
        [{"labels": lab, "masks": m} for lab, m in zip(labels, masks, strict=True)],
        torch.zeros(args.batch, *images.shape[-2:], dtype=torch.bool),
        torch.zeros(args.batch, *images.shape[-2:], dtype=torch.bool),
        [torch.Generator().manual_seed(i) for i in range(args.batch)],
    )
    num_masks = float(sum(len(lab) for lab in labels))
    normaliser = losses.class_normaliser([len(lab) for lab in labels])
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-5)
    our_opt = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-5)

    def hf_step() -> float:
        hf_opt.zero_grad(set_to_none=True)
        out = hf(images, mask_labels=[m.float() for m in masks], class_labels=labels)
        out.loss.backward()
        hf_opt.step()
        return float(out.loss.detach())

    def our_step() -> float:
        our_opt.zero_grad(set_to_none=True)
        result = losses(ours(images, return_aux=True), batch, num_masks, normaliser, 1.0)
        result.total.backward()
        our_opt.step()
        return float(result.total.detach())

    t_hf, t_ours = interleaved_medians([hf_step, our_step], args.repeats)
    print(
        f"R50 Mask2Former (100 queries, 9 layers), batch {args.batch} at {args.height}x{args.width}, "
        f"{args.threads} threads, median of {args.repeats} steps"
    )
    print("| | HF (s/step) | ours (s/step) | ours/HF | ours steps/s | HF steps/s |")
    print("|---|---|---|---|---|---|")
    print(f"| train step | {t_hf:.2f} | {t_ours:.2f} | {t_ours / t_hf:.2f} | {1 / t_ours:.3f} | {1 / t_hf:.3f} |")


if __name__ == "__main__":
    main()
