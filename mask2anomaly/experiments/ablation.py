"""The paper's ablations in kind on the synthetic benchmark (``mask2anomaly ablate``).

Paper 000 Table V (a) varies the decoder attention (cross, masked, global masked) and (c) the
training (without / with the mask contrastive loss) and the refinement mask. Here every attention is
trained with the ``synthetic_cpu`` recipe, then fine-tuned with ``synthetic_cpu_contrastive`` in its
two variants (``as_published``: Eq. 11 as printed and coded; ``corrected``: applied to the anomaly
score, the paper's stated intent), all at one reduced budget so that the nine runs fit a CPU; each
model is scored without and with refinement on the synthetic test split: pixel AuPRC and FPR95 of the
Mask2Anomaly score (exact protocol) and the closed-set mIoU.

Runs land in ``OUT/<attention>/<contrastive>/``; finished runs are reused and interrupted ones resumed,
so the command can be re-run until the table is complete. Writes ``OUT/ablation.json`` and
``OUT/ablation.md``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from mask2anomaly.errors import UserError
from mask2anomaly.inference import DatasetSource, open_model, run
from mask2anomaly.inference.consumers.validation import Validation
from mask2anomaly.io_utils import json_safe, write_text_atomic
from mask2anomaly.methods import parse_method
from mask2anomaly.training.recipes import load_recipe
from mask2anomaly.training.trainer import train_or_reuse

ATTENTIONS = ("cross", "masked", "global_masked")
CONTRASTIVE = ("none", "as_published", "corrected")
SCORES = ("mask2anomaly", "mask2anomaly+refine")


@dataclass(frozen=True)
class AblationConfig:
    """The shared budget of the ablation runs.

    Attributes:
        stage1_steps: closed-set training steps of each attention.
        contrastive_steps: mask contrastive fine-tuning steps.
        batch_size: images per step in both stages.
        test_images: synthetic test scenes scored.
        size: ``(H, W)`` of the test scenes.
        overrides: further ``key=value`` recipe overrides for both stages.
        device: where training and inference run (default: CUDA when available).
    """

    stage1_steps: int = 400
    contrastive_steps: int = 200
    batch_size: int = 4
    test_images: int = 50
    size: tuple[int, int] = (256, 512)
    overrides: tuple[str, ...] = ()
    device: str | None = None

    def __post_init__(self) -> None:
        if min(self.stage1_steps, self.contrastive_steps, self.batch_size, self.test_images) < 1:
            raise UserError("ablation steps, batch size and test images must be at least 1")


def train_runs(out: Path, config: AblationConfig) -> dict[tuple[str, str], Path]:
    """Train (or reuse) the nine models; ``{(attention, contrastive): checkpoint}``."""
    shared = [f"optim.batch_size={config.batch_size}", *config.overrides]
    models = {}
    for attention in ATTENTIONS:
        first = [f"model.attention={attention}", f"optim.max_steps={config.stage1_steps}", *shared]
        stage1 = train_or_reuse(load_recipe("synthetic_cpu", first), out / attention / "none", config.device)
        models[attention, "none"] = stage1
        for variant in CONTRASTIVE[1:]:
            second = [
                f"model.attention={attention}",
                f"loss.outlier.variant={variant}",
                f"train.init={stage1}",
                f"optim.max_steps={config.contrastive_steps}",
                *shared,
            ]
            recipe = load_recipe("synthetic_cpu_contrastive", second)
            models[attention, variant] = train_or_reuse(recipe, out / attention / variant, config.device)
    return models


def score_model(model: str, spec: str, device: str | None) -> dict[str, float]:
    """AuPRC and FPR95 of the Mask2Anomaly score without and with refinement, and the closed-set
    mIoU: one pass of the inference loop with the validation consumer."""
    predictor = open_model(model, device)
    validation = Validation()
    methods = [parse_method(name) for name in SCORES]
    run(DatasetSource(spec), predictor, methods, [validation], progress=Path(model).parent.name)
    values = validation.result()
    if "miou" not in values or f"{SCORES[0]}/auprc" not in values:
        raise UserError(f"{spec}: the ablation needs anomaly and semantic labels")
    result = {"miou": values["miou"]}
    for name in SCORES:
        suffix = "" if name == SCORES[0] else "_refine"
        result[f"auprc{suffix}"], result[f"fpr95{suffix}"] = values[f"{name}/auprc"], values[f"{name}/fpr95"]
    return result


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The Markdown table: one row per attention x contrastive, refinement off and on side by side."""
    lines = [
        "| attention | contrastive | AuPRC | FPR95 | AuPRC +refine | FPR95 +refine | mIoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for attention in ATTENTIONS:
        for variant in CONTRASTIVE:
            r = results[attention][variant]
            cells = [r["auprc"], r["fpr95"], r["auprc_refine"], r["fpr95_refine"], r["miou"]]
            lines.append(f"| {attention} | {variant} | " + " | ".join(f"{100 * v:.2f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(out: str | Path, config: AblationConfig = AblationConfig()) -> dict:
    """Train, score and tabulate; returns ``{attention: {contrastive: metrics}}``."""
    out = Path(out)
    start = time.perf_counter()
    models = train_runs(out, config)
    height, width = config.size
    spec = f"synthetic:test?n={config.test_images}&size={height}x{width}"
    results: dict[str, dict[str, dict[str, float]]] = {a: {} for a in ATTENTIONS}
    for (attention, variant), model in models.items():
        results[attention][variant] = score_model(str(model), spec, config.device)
    payload = {
        "config": {
            "stage1_steps": config.stage1_steps,
            "contrastive_steps": config.contrastive_steps,
            "batch_size": config.batch_size,
            "test": spec,
            "overrides": list(config.overrides),
        },
        "results": results,
        "seconds": round(time.perf_counter() - start),
    }
    write_text_atomic(out / "ablation.json", json.dumps(json_safe(payload), indent=2) + "\n")
    write_text_atomic(out / "ablation.md", table(results))
    return results
