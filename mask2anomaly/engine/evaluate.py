"""``mask2anomaly evaluate``: every method on every dataset from one forward pass per image.

For each dataset the images are scored once (split over ``torchrun`` processes by index), each
method's score maps are written as ``OUT/maps/<dataset>/<method>/<stem>.npy`` beside the labels
``OUT/maps/<dataset>/labels/<stem>.png``, and the metrics are computed from those files by the same
code as ``mask2anomaly evaluate-maps`` — so the two commands agree, and a sharded run equals a
single-process one. Results: ``OUT/metrics.json`` (``{dataset: {method: {"pixel": ..., "component":
..., "mdm": ...}}}``), ``OUT/results.md`` and the self-contained ``OUT/report.html``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from PIL import Image
from tqdm import tqdm

from mask2anomaly import data as datasets
from mask2anomaly.engine import distributed
from mask2anomaly.engine.inference import Predictor, open_model
from mask2anomaly.engine.report import Example, write_report
from mask2anomaly.engine.score_maps import evaluate as evaluate_maps
from mask2anomaly.engine.score_maps import iterate_pairs, json_safe, pair_files
from mask2anomaly.errors import UserError
from mask2anomaly.io_utils import save_npy_atomic, save_png_atomic, write_text_atomic
from mask2anomaly.methods import AnomalyMethod, parse_method


@dataclass
class DatasetRun:
    """What one dataset produced."""

    key: str
    spec: str
    num_images: int
    metrics: dict[str, dict] = field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def dataset_key(spec: str) -> str:
    """A short, file-safe name for a ``NAME:PATH[?options]`` dataset spec."""
    name, _, rest = spec.partition(":")
    path = rest.partition("?")[0].rstrip("/")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}_{Path(path).name or path}")


def dataset_keys(specs: list[str]) -> list[str]:
    """:func:`dataset_key` of each spec, made unique with ``_2``, ``_3`` ... suffixes."""
    keys: list[str] = []
    for spec in specs:
        key, n = dataset_key(spec), 2
        while key in keys:
            key, n = f"{dataset_key(spec)}_{n}", n + 1
        keys.append(key)
    return keys


def curve_points(pairs: list[tuple[str, Path, Path]], stride: int = 16, points: int = 200) -> dict[str, list[float]]:
    """PR and ROC curves for the report from every ``stride``-th valid pixel (the table's numbers
    are exact; the curves are only drawn)."""
    scores, labels = [], []
    for score, label, _ in iterate_pairs(pairs):
        valid = label.ravel() != 255
        scores.append(score.ravel()[valid][::stride].astype(np.float64))
        labels.append(label.ravel()[valid][::stride] == 1)
    s, y = np.concatenate(scores), np.concatenate(labels)
    if y.sum() == 0 or y.all():
        return {}
    order = np.argsort(-s, kind="stable")
    y = y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    pick = np.unique(np.linspace(0, len(y) - 1, points).astype(int))
    recall, precision = tp[pick] / tp[-1], tp[pick] / (tp[pick] + fp[pick])
    return {
        "recall": recall.round(5).tolist(),
        "precision": precision.round(5).tolist(),
        "fpr": (fp[pick] / fp[-1]).round(5).tolist(),
        "tpr": recall.round(5).tolist(),
    }


def _thumbnail(array: np.ndarray, width: int = 320) -> np.ndarray:
    image = Image.fromarray(array)
    height = max(1, round(image.height * width / image.width))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def heatmap(score: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 colour map of a score map (blue low, red high), blended over ``image``."""
    finite = score[np.isfinite(score)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    t = np.clip((score - lo) / (hi - lo + 1e-12), 0, 1)
    colour = np.stack([t, 1 - np.abs(2 * t - 1), 1 - t], -1) * 255
    if image is not None:
        colour = 0.55 * colour + 0.45 * image.astype(np.float64)
    return colour.astype(np.uint8)


def _score_dataset(
    predictor: Predictor,
    key: str,
    spec: str,
    reader: datasets.Reader,
    methods: list[AnomalyMethod],
    out: Path,
    short_side: int | None,
    strict: bool,
    max_images: int,
    num_examples: int,
    process: distributed.Process,
) -> DatasetRun:
    count = len(reader) if max_images <= 0 else min(max_images, len(reader))
    run = DatasetRun(key, spec, count)
    root = out / "maps" / key
    indices = range(process.rank, count, process.world_size)
    bar = tqdm(indices, desc=key, unit="img", disable=not process.is_main)
    for index in bar:
        try:
            sample = reader[index]
        except UserError as err:
            if strict:
                raise
            warnings.warn(f"skipped: {err}", stacklevel=1)
            run.skipped.append(str(err))
            continue
        if sample.anomaly is None:
            raise UserError(f"{spec}: dataset has no anomaly labels to evaluate against")
        prediction = predictor.predict(sample.image, methods, short_side)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", sample.name)
        save_png_atomic(root / "labels" / f"{stem}.png", sample.anomaly)
        for name, score in prediction.scores.items():
            save_npy_atomic(root / name / f"{stem}.npy", score.astype(np.float32))
        if index < num_examples:
            run.examples.append(
                Example(
                    name=sample.name,
                    image=_thumbnail(sample.image),
                    truth=_thumbnail(
                        np.where(sample.anomaly[..., None] == 1, [255, 60, 0], sample.image).astype(np.uint8)
                    ),
                    maps={n: _thumbnail(heatmap(s, sample.image)) for n, s in prediction.scores.items()},
                )
            )
    return run


def _gather(runs: list[DatasetRun], process: distributed.Process) -> list[DatasetRun]:
    if not process.distributed:
        return runs
    everything: list[list[DatasetRun] | None] = [None] * process.world_size
    dist.all_gather_object(everything, runs)
    merged = []
    for parts in zip(*everything, strict=True):
        first = parts[0]
        first.skipped = sorted(s for p in parts for s in p.skipped)
        first.examples = sorted((e for p in parts for e in p.examples), key=lambda e: e.name)
        merged.append(first)
    return merged


def results_markdown(runs: list[DatasetRun], methods: list[str]) -> str:
    """The results table in Markdown: AuPRC, FPR95, AUROC, sIoU, PPV, F1* in percent."""
    lines = ["| dataset | method | AuPRC | FPR95 | AUROC | sIoU | PPV | F1* |", "|---|---|---|---|---|---|---|---|"]

    def pct(value: float | None) -> str:
        return "n/a" if value is None or value != value else f"{100 * value:.2f}"

    for run in runs:
        for method in methods:
            m = run.metrics[method]
            p, c = m["pixel"], m["component"]
            lines.append(
                f"| {run.key} | {method} | {pct(p['auprc'])} | {pct(p['fpr95'])} | {pct(p['auroc'])} | "
                f"{pct(c['siou'])} | {pct(c['ppv'])} | {pct(c['f1_star'])} |"
            )
    return "\n".join(lines) + "\n"


def evaluate(*args: Any, **kwargs: Any) -> dict[str, dict[str, dict]]:
    """:func:`evaluate_runs` (same arguments), returning the ``metrics.json`` content."""
    return {run.key: run.metrics for run in evaluate_runs(*args, **kwargs)}


def evaluate_runs(
    model: str,
    dataset_specs: list[str],
    method_names: Sequence[str | AnomalyMethod],
    out: str | Path,
    short_side: int | None = None,
    strict: bool = False,
    max_images: int = 0,
    num_examples: int = 3,
    protocol: str = "exact",
    track: str = "anomaly",
    device: str | None = None,
) -> list[DatasetRun]:
    """Evaluate ``method_names`` of ``model`` on every dataset; returns each dataset's run (metrics,
    curves, example thumbnails) and writes ``metrics.json``, ``results.md`` and ``report.html``.

    Methods are names (``"mask2anomaly+refine"``) or built methods (to set their parameters). Under
    ``torchrun`` only the main process gets the metrics.
    """
    out = Path(out)
    methods = [m if isinstance(m, AnomalyMethod) else parse_method(m) for m in method_names]
    process = distributed.setup(device)
    predictor = open_model(model, process.device)
    predictor.check_methods(methods)
    readers = [datasets.open_spec(spec) for spec in dataset_specs]
    names = [m.name for m in methods]
    runs = [
        _score_dataset(
            predictor, key, spec, reader, methods, out, short_side, strict, max_images, num_examples, process
        )
        for key, spec, reader in zip(dataset_keys(dataset_specs), dataset_specs, readers, strict=True)
    ]
    runs = _gather(runs, process)
    distributed.barrier(process)
    if process.is_main:
        for run in runs:
            root = out / "maps" / run.key
            for name in names:
                pairs = pair_files(root / name, root / "labels")
                run.metrics[name] = json_safe(evaluate_maps(pairs, protocol, track, None))
                run.curves[name] = curve_points(pairs)
        results = {run.key: run.metrics for run in runs}
        write_text_atomic(out / "metrics.json", json.dumps(results, indent=2) + "\n")
        write_text_atomic(out / "results.md", results_markdown(runs, names))
        write_report(out / "report.html", runs, names, model)
    distributed.barrier(process)
    distributed.teardown(process)
    return runs
