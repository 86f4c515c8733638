"""Training: Hungarian-matched mask training (stage 1) and outlier fine-tuning (stage 2).

Read top to bottom: build the model, the optimiser and the losses, then for every step gather the
step's images (:mod:`~mask2anomaly.training.data`), compute the losses with normalisers
that count the whole step's targets over every process and micro-batch, step AdamW with warm-up,
polynomial decay and gradient clipping, and every few steps write a checkpoint atomically.

Because normalisers are global and every random draw depends only on the seed and the sample
number, a run split over ``torchrun`` processes or accumulation steps takes the same steps as one
process on the joined batch, and ``--resume`` continues bit-identically on the same machine.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from mask2anomaly import data as datasets
from mask2anomaly import distributed
from mask2anomaly.config_utils import to_dict
from mask2anomaly.data.base import VOID
from mask2anomaly.data.synthetic import VERSION as SYNTHETIC_VERSION
from mask2anomaly.errors import UserError
from mask2anomaly.inference import DatasetSource, Predictor, run
from mask2anomaly.inference.consumers.panoptic import Mining, PanopticMetrics
from mask2anomaly.inference.consumers.validation import Validation
from mask2anomaly.inference.loop import Consumer
from mask2anomaly.io_utils import write_text_atomic
from mask2anomaly.losses import HungarianMatcher, LossOutput, SetCriterion, outlier_loss
from mask2anomaly.losses.densehybrid import POSTERIOR_FACTOR, likelihood_term, posterior_term
from mask2anomaly.methods import parse_method
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic
from mask2anomaly.models import MaskTransformer
from mask2anomaly.models.espnetv2 import ESPNetV2Segmentation, load_espnetv2
from mask2anomaly.models.formats.state_dict import load_strict
from mask2anomaly.models.loading import load_model
from mask2anomaly.training.checkpoint import TrainingState, load_training_state, save_training_state
from mask2anomaly.training.config import MiningConfig, RunConfig
from mask2anomaly.training.data import Batch, TrainingData, collate
from mask2anomaly.training.flow import FLOW_PREFIX, FlowNegatives, PatchFlow, flow_generator
from mask2anomaly.training.pseudo_labels import PseudoLabeller
from mask2anomaly.training.recipes import load_recipe

CHECKPOINT = "last.safetensors"


class TrainingError(UserError):
    """A run that cannot go on (e.g. a NaN loss); the last good checkpoint is kept."""


def learning_rate_factor(step: int, config: RunConfig) -> float:
    """Linear warm-up from ``warmup_factor`` times poly decay ``(1 - step / max_steps) ** power``."""
    optim = config.optim
    warmup = 1.0
    if step < optim.warmup_steps:
        alpha = step / optim.warmup_steps
        warmup = optim.warmup_factor * (1 - alpha) + alpha
    return warmup * (1 - step / optim.max_steps) ** optim.poly_power


def parameter_groups(model: nn.Module, config: RunConfig) -> list[dict[str, Any]]:
    """AdamW groups: the backbone (a mask transformer's, ESPNetv2's encoder) at ``lr *
    backbone_lr_multiplier``; norms and embeddings without decay."""
    no_decay_types = (nn.LayerNorm, nn.GroupNorm, nn.Embedding)
    no_decay = {id(p) for m in model.modules() if isinstance(m, no_decay_types) for p in m.parameters(recurse=False)}
    if isinstance(model, MaskTransformer):
        no_decay.add(id(model.pixel_decoder.level_embed))
        trunk = model.backbone
    else:
        trunk = model.base_net
    backbone = {id(p) for p in trunk.parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            groups.setdefault((id(parameter) in backbone, id(parameter) in no_decay), []).append(parameter)
    out = []
    for (is_backbone, skip_decay), params in sorted(groups.items()):
        lr = config.optim.lr * (config.optim.backbone_lr_multiplier if is_backbone else 1.0)
        out.append(
            {
                "params": params,
                "lr": lr,
                "base_lr": lr,
                "weight_decay": 0.0 if skip_decay else config.optim.weight_decay,
            }
        )
    return out


def _with_fresh_head(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` completed with the model's own freshly initialised dataset-posterior head when the
    weights it is initialised from have none (DenseHybrid fine-tuning of a closed-set model)."""
    head = {k: v for k, v in model.state_dict().items() if k.startswith("dataset_head.")}
    return {**head, **state}


def build_model(config: RunConfig) -> nn.Module:
    """The run's model: ESPNetv2 when ``config.espnetv2`` is set, else the mask transformer;
    initialised from ``train.init`` when given (weights only; the run's architecture must match,
    except for a dataset-posterior head the init lacks, which starts fresh), otherwise fresh with
    its pretrained backbone."""
    if config.espnetv2 is not None:
        model: nn.Module = ESPNetV2Segmentation(config.espnetv2)
        if config.train.init is not None:
            source = load_espnetv2(config.train.init)
            load_strict(model, _with_fresh_head(model, source.state_dict()), f"{config.train.init} (train.init)")
        return model
    if config.train.init is None:
        return MaskTransformer(config.model)
    source = load_model(config.train.init)
    model = MaskTransformer(config.model, load_pretrained=False)
    load_strict(model, _with_fresh_head(model, source.state_dict()), f"{config.train.init} (train.init)")
    return model


class DenseForward(nn.Module):
    """A per-pixel model's training forward pass, ``(logits, dataset logits)``, as a module (so that
    ``DistributedDataParallel`` can wrap it)."""

    def __init__(self, model: ESPNetV2Segmentation) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, return_aux: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model.forward_dense(images)


class Losses(nn.Module):
    """The model's closed-set loss plus the optional outlier loss, weighted and summed: the set
    criterion of a mask transformer, or the per-pixel cross-entropy of ESPNetv2 (void and pasted
    pixels ignored) with DenseHybrid's terms."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        loss = config.loss
        self.per_pixel = config.espnetv2 is not None
        matcher = HungarianMatcher(loss.class_weight, loss.mask_weight, loss.dice_weight, loss.num_points)
        self.criterion = SetCriterion(
            config.model.num_classes,
            matcher,
            class_weight=loss.class_weight,
            mask_weight=loss.mask_weight,
            dice_weight=loss.dice_weight,
            no_object_weight=loss.no_object_weight,
            num_points=loss.num_points,
            oversample_ratio=loss.oversample_ratio,
            importance_sample_ratio=loss.importance_sample_ratio,
        )
        self.no_object_weight = loss.no_object_weight
        self.num_queries = config.model.num_queries
        self.outlier = loss.outlier

    def class_normaliser(self, num_targets: list[int]) -> float:
        """Sum of cross-entropy weights over the images: matched queries 1, the others no-object."""
        q = self.num_queries
        return sum(min(t, q) + self.no_object_weight * (q - min(t, q)) for t in num_targets)

    def forward(self, output, batch: Batch, num_masks: float, class_normaliser: float, image_share: float):
        if self.per_pixel:
            return self._per_pixel(output, batch, image_share)
        losses = self.criterion(
            output, batch.targets, generator=batch.generators, num_masks=num_masks, class_normaliser=class_normaliser
        )
        if self.outlier is not None:
            extra = outlier_loss(output, batch.outliers, self.outlier, ignore=batch.padding)
            losses = losses.merge(
                type(extra)(extra.total * image_share, {k: v * image_share for k, v in extra.terms.items()})
            )
        return losses

    def _per_pixel(self, output: tuple[torch.Tensor, torch.Tensor | None], batch: Batch, image_share: float):
        logits, dataset = output
        terms = {"loss_ce": F.cross_entropy(logits, batch.semantic, ignore_index=VOID) * image_share}
        if self.outlier is not None:
            assert dataset is not None
            beta = self.outlier.resolved_weight
            log_likelihood = torch.logsumexp(logits, 1)
            terms["loss_likelihood"] = (
                beta * likelihood_term(log_likelihood, batch.outliers, batch.padding) * image_share
            )
            terms["loss_posterior"] = (
                beta * POSTERIOR_FACTOR * posterior_term(dataset, batch.outliers, batch.padding) * image_share
            )
        return LossOutput(total=torch.stack(list(terms.values())).sum(), terms=terms)


def validation_method(model: nn.Module) -> str:
    """The anomaly score validated during training: DenseHybrid's with its head, else Mask2Anomaly's
    (paper Eq. 5) on a mask transformer and MSP on a per-pixel model."""
    if getattr(model, "dataset_head", None) is not None:
        return "densehybrid"
    return "mask2anomaly" if isinstance(model, MaskTransformer) else "msp"


def validate(
    model: nn.Module, reader: datasets.Reader, max_images: int = 0, mining: MiningConfig | None = None
) -> dict[str, float]:
    """Closed-set mIoU and, when the set has anomaly labels, the pixel metrics of the
    :func:`validation_method` score, on the first ``max_images`` images of ``reader`` (0: all): one pass of the
    inference loop; the model goes back to training mode afterwards. With ``mining`` (open-set
    panoptic runs), also PQ of the known and of the unknown class, unknown instances found by the
    paper's mining with those settings.

    Returns:
        ``{"miou"}``, ``{"auprc", "fpr95", "auroc"}`` and ``{"pq", "pq_unknown"}`` as the set allows;
        fractions in [0, 1].
    """
    was_training = model.training
    device = next(model.parameters()).device
    validation = Validation()
    method = validation_method(model)
    consumers: list[Consumer] = [validation]
    panoptic = None
    if mining is not None:
        settings = OpenSetPanoptic(**{k: getattr(mining, k) for k in vars(mining)})
        panoptic = PanopticMetrics([Mining("paper", settings)])
        consumers.append(panoptic)
    try:
        run(
            DatasetSource(reader, max_images),
            Predictor(model, device),
            [parse_method(method)],
            consumers,
            progress="validate",
        )
    finally:
        model.train(was_training)
    metrics = {key.removeprefix(f"{method}/"): value for key, value in validation.result().items()}
    if panoptic is not None:
        summary = panoptic.result()["paper"]
        metrics["pq"] = summary["all"]["pq"]
        if "unknown" in summary:
            metrics["pq_unknown"] = summary["unknown"]["pq"]
    return metrics


def _due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


def _prepare_out(out: Path, resume: bool) -> TrainingState | None:
    checkpoint = out / CHECKPOINT
    if resume:
        return load_training_state(checkpoint)
    if checkpoint.exists():
        raise UserError(
            f"{checkpoint}: a run already exists here; pass --resume to continue it or choose another --out"
        )
    return None


def train(config: RunConfig, out: str | Path, resume: bool = False, device: str | None = None) -> Path:
    """Run (or resume) training; returns the path of the final checkpoint."""
    out = Path(out)
    process = distributed.setup(device)
    state = _prepare_out(out, resume)
    if state is not None:
        config = replace(state.config, optim=replace(state.config.optim, max_steps=config.optim.max_steps))
        _require_same_generator(config, out)
    if config.optim.batch_size % (process.world_size * config.optim.accumulation):
        raise UserError(
            f"optim.batch_size={config.optim.batch_size} is not divisible by processes x accumulation "
            f"({process.world_size} x {config.optim.accumulation})"
        )
    if config.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(config.train.seed)
    num_classes = config.espnetv2.num_classes if config.espnetv2 is not None else config.model.num_classes
    model = build_model(config).to(process.device).train()
    labeller = None
    if config.data.pseudo_labels:
        if config.train.init is None:
            raise UserError("data.pseudo_labels takes its labels from the initial network: set train.init")
        labeller = PseudoLabeller(build_model(config))
    data = TrainingData(config.data, num_classes, config.train.seed, labeller)
    val_reader = datasets.open_spec(config.data.val) if config.data.val else None
    flow = None
    groups = parameter_groups(model, config)
    if config.flow is not None:
        assert config.data.negatives is not None
        flow = PatchFlow(config.flow, config.data.negatives.patch).to(process.device).train()
        groups.append(
            {"params": list(flow.parameters()), "lr": config.flow.lr, "base_lr": config.flow.lr, "weight_decay": 0.0}
        )
    losses = Losses(config).to(process.device)
    optimizer = torch.optim.AdamW(groups, betas=tuple(config.optim.betas), eps=config.optim.eps)
    step = 0
    if state is not None:
        weights = {k: v for k, v in state.model.items() if not k.startswith(FLOW_PREFIX)}
        load_strict(model, weights, str(out / CHECKPOINT))
        if flow is not None:
            flow_weights = {k[len(FLOW_PREFIX) :]: v for k, v in state.model.items() if k.startswith(FLOW_PREFIX)}
            load_strict(flow, flow_weights, str(out / CHECKPOINT))
        optimizer.load_state_dict(state.optimizer)
        step = state.step
    wrapped: nn.Module = DenseForward(model) if isinstance(model, ESPNetV2Segmentation) else model
    if process.distributed:
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[process.device.index] if process.device.type == "cuda" else None
        )
    use_amp = config.optim.amp and process.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if process.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    log = _Logger(out, process.is_main)

    per_process = config.optim.batch_size // process.world_size
    micro = per_process // config.optim.accumulation
    last_good = step
    generator = _generator_version(config)
    bar = tqdm(total=config.optim.max_steps, initial=step, disable=not process.is_main, desc="train", unit="step")
    started = time.perf_counter()
    while step < config.optim.max_steps:
        factor = learning_rate_factor(step, config)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        first = step * config.optim.batch_size + process.rank * per_process
        examples = [data.example(n) for n in range(first, first + per_process)]
        counts = torch.tensor(
            [sum(len(e.labels) for e in examples), losses.class_normaliser([len(e.labels) for e in examples])],
            dtype=torch.float64,
        )
        total_masks, total_class = distributed.all_sum(counts.to(process.device), process).tolist()
        optimizer.zero_grad(set_to_none=True)
        terms: dict[str, float] = {}
        flow_terms: dict[str, float] = {}
        for index in range(config.optim.accumulation):
            batch = collate(examples[index * micro : (index + 1) * micro]).to(process.device)
            last = index == config.optim.accumulation - 1
            share = micro * process.world_size / config.optim.batch_size
            negatives = None
            if flow is not None:
                assert config.flow is not None
                negatives = FlowNegatives(
                    flow, config.flow, batch, flow_generator(config.train.seed, step, process.rank, index)
                )
                batch = negatives.pasted_batch()
            context = wrapped.no_sync() if process.distributed and not last else contextlib.nullcontext()
            with context, torch.autocast(process.device.type, enabled=use_amp):
                output = wrapped(batch.images, return_aux=True)
                result = losses(
                    output,
                    batch,
                    num_masks=max(total_masks, 1.0) / process.world_size,
                    class_normaliser=total_class / process.world_size,
                    image_share=share,
                )
                scaler.scale(result.total).backward()
            for name, value in result.terms.items():
                terms[name] = terms.get(name, 0.0) + float(value.detach())
            if negatives is not None:
                for name, value in negatives.train_step(model, share).items():
                    flow_terms[name] = flow_terms.get(name, 0.0) + value
        total = sum(terms.values())
        if not all(math.isfinite(v) for v in (total, *flow_terms.values())):
            bar.close()
            kept = f"the last good checkpoint is {out / CHECKPOINT} (step {last_good})"
            if not (out / CHECKPOINT).exists():
                kept = "no checkpoint was written yet"
            bad = ", ".join(f"{k} {v}" for k, v in {**terms, **flow_terms}.items() if not math.isfinite(v))
            raise TrainingError(f"loss is {total} at step {step + 1} ({bad}); training stopped, {kept}")
        if config.optim.clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.clip_grad)
            if flow is not None:
                torch.nn.utils.clip_grad_norm_(flow.parameters(), config.optim.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        bar.update(1)
        lr = max(group["lr"] for group in optimizer.param_groups)
        bar.set_postfix(loss=f"{total:.3f}", lr=f"{lr:.2e}")
        if step % config.train.log_every == 0 or step == config.optim.max_steps:
            log.write(step, total, lr, {**terms, **flow_terms}, time.perf_counter() - started)
        summary: dict[str, Any] = {"step": step, "loss": total, **generator}
        if val_reader is not None and process.is_main and _due(step, config.train.val_every, config.optim.max_steps):
            mining = config.mining if config.data.target == "panoptic" else None
            metrics = validate(model, val_reader, config.train.val_images, mining)
            summary.update({f"val_{k}": v for k, v in metrics.items()})
            log.validation(step, metrics)
        if process.is_main and (step % config.train.checkpoint_every == 0 or step == config.optim.max_steps):
            weights = model.state_dict()
            if flow is not None:
                weights.update({FLOW_PREFIX + k: v for k, v in flow.state_dict().items()})
            save_training_state(
                out / CHECKPOINT, TrainingState(step, config, weights, optimizer.state_dict()), extra=summary
            )
            write_text_atomic(out / "last.json", json.dumps(summary, indent=2))
            last_good = step
    bar.close()
    log.close()
    distributed.barrier(process)
    distributed.teardown(process)
    return out / CHECKPOINT


LOG_HEADER = ("step", "loss", "lr", "seconds", "terms")


class _Logger:
    """CSV log (``OUT/log.csv``) and TensorBoard (``OUT/tensorboard``) when the ``tensorboard``
    package is installed (``pip install 'mask2anomaly[train]'``). A log whose header line a kill
    left missing or torn gets it back (with its whole rows) when the run resumes."""

    def __init__(self, out: Path, active: bool) -> None:
        self.active = active
        self.csv_file = None
        self.tensorboard = None
        if not active:
            return
        log = out / "log.csv"
        rows = log.read_text().splitlines(keepends=True) if log.exists() else []
        if not rows or rows[0].strip() != ",".join(LOG_HEADER):
            kept = [row for row in rows if row.strip() and row[0].isdigit() and row.endswith("\n")]
            write_text_atomic(log, ",".join(LOG_HEADER) + "\n" + "".join(kept))
        self.csv_file = open(log, "a", newline="")  # noqa: SIM115
        self.writer = csv.writer(self.csv_file)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            tqdm.write("TensorBoard logs are off: pip install 'mask2anomaly[train]' (CSV log: log.csv)")

    def write(self, step: int, loss: float, lr: float, terms: dict[str, float], seconds: float) -> None:
        if not self.active:
            return
        main_terms = {k: round(v, 6) for k, v in terms.items() if not k[-1].isdigit()}
        self.writer.writerow([step, f"{loss:.6f}", f"{lr:.6e}", f"{seconds:.1f}", main_terms])
        self.csv_file.flush()
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("loss/total", loss, step)
            self.tensorboard.add_scalar("lr", lr, step)
            for name, value in main_terms.items():
                self.tensorboard.add_scalar(f"loss/{name}", value, step)

    def validation(self, step: int, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if self.tensorboard is not None:
            for name, value in metrics.items():
                self.tensorboard.add_scalar(f"val/{name}", value, step)

    def close(self) -> None:
        if self.csv_file is not None:
            self.csv_file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def train_or_reuse(config: RunConfig, out: str | Path, device: str | None = None) -> Path:
    """:func:`train` into ``out``, resuming an interrupted run there and reusing one that reached its last step.

    For pipelines (the demo, the ablation) that may be re-run after an interruption.
    """
    out = Path(out)
    summary = out / "last.json"
    if summary.exists():
        _require_same_config(config, out / "config.yaml")
        _require_same_generator(config, out)
        if json.loads(summary.read_text()).get("step") == config.optim.max_steps:
            return out / CHECKPOINT
    return train(config, out, resume=summary.exists(), device=device)


def _generator_version(config: RunConfig) -> dict[str, int]:
    """What a run summary records of the data generator: its version when the run uses synthetic data."""
    uses = [config.data.train, config.data.val, config.data.outlier_pool]
    if any(spec is not None and spec.startswith("synthetic") for spec in uses):
        return {"synthetic_version": SYNTHETIC_VERSION}
    return {}


def _require_same_generator(config: RunConfig, out: Path) -> None:
    """Refuse to reuse or resume a run on synthetic data of another generator version (other images)."""
    summary = out / "last.json"
    wanted = _generator_version(config).get("synthetic_version")
    if wanted is None or not summary.exists():
        return
    had = json.loads(summary.read_text()).get("synthetic_version")
    if had != wanted:
        older = f"version {had}" if had is not None else "an older version"
        raise UserError(
            f"{out}: trained on synthetic data of generator {older}, not of version {wanted}; "
            "remove it or choose another --out"
        )


def _require_same_config(config: RunConfig, saved: Path) -> None:
    """Refuse to reuse or resume a run trained with another configuration (e.g. an edited recipe)."""
    if not saved.exists():
        raise UserError(f"{saved}: missing; cannot tell which configuration the run in {saved.parent} used")
    found = load_recipe(str(saved))
    differing = [f.name for f in fields(config) if getattr(found, f.name) != getattr(config, f.name)]
    if differing:
        raise UserError(
            f"{saved.parent}: holds a run of another configuration (different {', '.join(differing)}); "
            "remove it or choose another --out"
        )
