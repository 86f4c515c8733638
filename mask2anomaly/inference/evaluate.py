"""``mask2anomaly evaluate``: every requested task and method on every dataset, one pass per dataset.

Tasks (any combination, sharing one forward pass per image):

- ``anomaly``: every method's score maps written beside the labels (``OUT/maps/<dataset>/``), the
  benchmark metrics of exactly those files (:class:`~mask2anomaly.inference.consumers.anomaly.AnomalyMetrics`);
- ``oss``: mIoU and Open-mIoU of every method, unknown where its score is above its threshold:
  given (``threshold``), calibrated at TPR 95% on another dataset (``calibration``, a pass of its
  own before), or for two datasets each at the other's threshold (``cross_calibrate``, the
  StreetHazards t5 / t6 protocol; the closed-set mIoU pools both);
- ``ops``: PQ of known and unknown classes for every mining configuration (the paper's, none,
  and RbA's from every method's score at its threshold).

Nothing another run left in ``OUT`` counts: a run takes ``OUT/.lock`` (a second run into the same
folder is refused), writes into ``OUT/.staging``, and at the end replaces ``OUT/maps/<dataset>``
with what it wrote, then writes ``OUT/metrics.json``, ``OUT/results.md`` and the self-contained
``OUT/report.html``. Under ``torchrun`` the images are split over the processes; the result is the
same.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mask2anomaly import distributed
from mask2anomaly.errors import UserError
from mask2anomaly.inference.consumers.anomaly import AnomalyMetrics
from mask2anomaly.inference.consumers.open_set import OpenIoU, ThresholdCalibration
from mask2anomaly.inference.consumers.panoptic import Mining, PanopticMetrics
from mask2anomaly.inference.consumers.writers import Examples
from mask2anomaly.inference.loop import Consumer, run
from mask2anomaly.inference.predictor import InputSize, Predictor, open_model
from mask2anomaly.inference.sources import DatasetSource
from mask2anomaly.io_utils import ensure_writable_dir, folder_lock, json_safe, write_text_atomic
from mask2anomaly.methods import AnomalyMethod, Maskomaly, parse_method
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic
from mask2anomaly.metrics import cross_calibrated_open_iou
from mask2anomaly.metrics.pixel import PROTOCOLS
from mask2anomaly.viz.report import DatasetReport, dataset_section, page, percent

TASKS = ("anomaly", "oss", "ops")
MININGS = ("paper", "rba", "none")


@dataclass(frozen=True)
class OpenSetOptions:
    """Thresholds of the open-set tasks and the unknown-instance mining of ``ops``.

    Attributes:
        threshold: one threshold for every method, or one per method name.
        calibration: ``NAME:PATH`` of a set with anomaly (or open-set semantic) labels on which
            each method's threshold is calibrated at TPR 95%.
        cross_calibrate: two datasets, each thresholded at the other's TPR-95 threshold.
        minings: ``ops`` mining configurations: ``paper``, ``none``, ``rba`` (one per method,
            thresholded at the method's threshold).
        panoptic: settings of the panoptic inference (thresholds, the paper mining's parameters).
    """

    threshold: float | dict[str, float] | None = None
    calibration: str | None = None
    cross_calibrate: bool = False
    minings: tuple[str, ...] = ("paper",)
    panoptic: OpenSetPanoptic = field(default_factory=OpenSetPanoptic)

    @property
    def thresholds_given(self) -> int:
        return sum((self.threshold is not None, self.calibration is not None, self.cross_calibrate))


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything ``evaluate`` needs (see the module docstring).

    Attributes:
        model: a checkpoint, or ``KIND:PATH``.
        datasets: ``NAME:PATH[?options]`` specs.
        methods: method names (``mask2anomaly+refine``) or built methods.
        out: output folder.
        tasks: a non-empty subset of :data:`TASKS`.
        input_size: the network input size when not the model's own.
        strict: an unreadable image is fatal (default: skipped and listed).
        max_images: the first N images of each dataset (0: all).
        examples: example images per dataset in the report.
        protocol: pixel-metric protocol of the anomaly task.
        also_protocols: further protocols reported beside it (``pixel_<protocol>``).
        track: SMIYC component track.
        open_set: thresholds and mining of ``oss`` / ``ops``.
        example_open_set: the methods whose open-set maps the examples show (``None``: all).
        device: ``cpu``, ``cuda``, ``cuda:N`` (default: CUDA when available).
    """

    model: str
    datasets: tuple[str, ...]
    methods: tuple[str | AnomalyMethod, ...]
    out: Path
    tasks: tuple[str, ...] = ("anomaly",)
    input_size: InputSize = field(default_factory=InputSize)
    strict: bool = False
    max_images: int = 0
    examples: int = 3
    protocol: str = "exact"
    also_protocols: tuple[str, ...] = ()
    track: str = "anomaly"
    open_set: OpenSetOptions = field(default_factory=OpenSetOptions)
    example_open_set: tuple[str, ...] | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.datasets:
            raise UserError("give at least one --dataset")
        if not self.methods:
            raise UserError("--methods is empty: give at least one method")
        if not self.tasks or any(t not in TASKS for t in self.tasks) or len(set(self.tasks)) != len(self.tasks):
            raise UserError(f"--task {','.join(self.tasks)}: expected a comma-separated subset of {', '.join(TASKS)}")
        if self.max_images < 0 or self.examples < 0:
            raise UserError("--max-images and --examples must not be negative")
        for name in (self.protocol, *self.also_protocols):
            if name not in PROTOCOLS:
                raise UserError(f"--protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
        options = self.open_set
        if any(m not in MININGS for m in options.minings) or not options.minings:
            raise UserError(f"--mining {','.join(options.minings)}: expected a subset of {', '.join(MININGS)}")
        needs_thresholds = "oss" in self.tasks or ("ops" in self.tasks and "rba" in options.minings)
        if needs_thresholds and options.thresholds_given != 1:
            raise UserError(
                "open-set tasks need exactly one of --threshold, --calibration, --cross-calibrate "
                "(oss; ops with rba mining)"
            )
        if not needs_thresholds and options.thresholds_given:
            raise UserError(
                "--threshold, --calibration and --cross-calibrate apply to --task oss (and ops with rba mining)"
            )
        if options.cross_calibrate and (len(self.datasets) != 2 or "ops" in self.tasks):
            raise UserError(
                "--cross-calibrate needs exactly two datasets (e.g. StreetHazards t5 and t6) and no ops task"
            )


def dataset_key(spec: str) -> str:
    """A short, file-safe name for a ``NAME:PATH[?options]`` dataset spec."""
    name, _, rest = spec.partition(":")
    path = rest.partition("?")[0].rstrip("/")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}_{Path(path).name or path}")


def dataset_keys(specs: tuple[str, ...] | list[str]) -> list[str]:
    """:func:`dataset_key` of each spec, made unique with ``_2``, ``_3`` ... suffixes."""
    keys: list[str] = []
    for spec in specs:
        key, n = dataset_key(spec), 2
        while key in keys:
            key, n = f"{dataset_key(spec)}_{n}", n + 1
        keys.append(key)
    return keys


def method_thresholds(threshold: float | dict[str, float], methods: list[str]) -> dict[str, float]:
    """One threshold per method from a single value or a per-method mapping."""
    if isinstance(threshold, dict):
        missing = [m for m in methods if m not in threshold]
        if missing:
            raise UserError(f"--threshold gives no value for {', '.join(missing)}")
        return {m: float(threshold[m]) for m in methods}
    return {m: float(threshold) for m in methods}


def calibrate(
    predictor: Predictor,
    methods: list[AnomalyMethod],
    spec: str,
    *,
    max_images: int = 0,
    strict: bool = False,
    process: distributed.Process | None = None,
) -> dict[str, float]:
    """Each method's TPR-95 threshold on the dataset ``spec`` (one pass of the loop)."""
    calibration = ThresholdCalibration()
    source = DatasetSource(spec, max_images)
    run(source, predictor, methods, [calibration], strict=strict, process=process, progress="calibrate")
    return calibration.result() if process is None or process.is_main else {}


def minings(options: OpenSetOptions, methods: list[str], thresholds: dict[str, float] | None) -> list[Mining]:
    """The ``ops`` mining configurations: ``paper`` / ``none``, and ``rba:<method>`` per method."""
    out = []
    for kind in options.minings:
        if kind == "rba":
            assert thresholds is not None
            for name in methods:
                config = OpenSetPanoptic(
                    **{**vars(options.panoptic), "mining": "rba", "score_threshold": thresholds[name]}
                )
                out.append(Mining(f"rba:{name}", config, name))
        else:
            out.append(Mining(kind, OpenSetPanoptic(**{**vars(options.panoptic), "mining": kind})))
    return out


@dataclass
class _DatasetRun:
    key: str
    spec: str
    consumers: dict[str, Consumer]
    num_images: int = 0
    skipped: list[str] = field(default_factory=list)


def evaluate(config: EvaluateConfig) -> dict:
    """Run the evaluation (see the module docstring); returns the ``metrics.json`` content (on the
    main process; other ``torchrun`` processes get an empty dict)."""
    return evaluate_with_reports(config)[0]


def evaluate_with_reports(config: EvaluateConfig) -> tuple[dict, list[DatasetReport]]:
    """:func:`evaluate`, also returning what the report shows of each dataset."""
    out = ensure_writable_dir(config.out, "--out ")
    process = distributed.setup(config.device)
    with folder_lock(out) if process.is_main else contextlib.nullcontext():
        distributed.barrier(process)
        return _evaluate(config, out, process)


def _mining_settings(panoptic: OpenSetPanoptic) -> dict:
    """The paper mining's settings, as ``metrics.json`` records them."""
    keys = ("num_components", "iterations", "background_threshold", "overlap", "min_overlap", "entropy")
    return {key: getattr(panoptic, key) for key in keys}


def _evaluate(config: EvaluateConfig, out: Path, process: distributed.Process) -> tuple[dict, list[DatasetReport]]:
    predictor = open_model(config.model, process.device, config.input_size)
    methods = [m if isinstance(m, AnomalyMethod) else parse_method(m) for m in config.methods]
    predictor.check_methods(methods)
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise UserError(f"--methods names a method twice: {', '.join(names)}")
    options = config.open_set
    staging = out / ".staging"
    if process.is_main and staging.exists():
        shutil.rmtree(staging)
    distributed.barrier(process)
    thresholds: dict[str, float] | None = None
    if options.threshold is not None:
        thresholds = method_thresholds(options.threshold, names)
    elif options.calibration is not None:
        thresholds = calibrate(predictor, methods, options.calibration, strict=config.strict, process=process)
        thresholds = distributed.gather(thresholds, process)[0]
    runs = []
    for key, spec in zip(dataset_keys(config.datasets), config.datasets, strict=True):
        consumers: dict[str, Consumer] = {}
        if "anomaly" in config.tasks:
            consumers["anomaly"] = AnomalyMetrics(
                staging / "maps" / key, config.protocol, config.track, config.also_protocols
            )
        if "oss" in config.tasks:
            deferred = options.cross_calibrate
            consumers["oss"] = OpenIoU(None if deferred else thresholds, deferred, staging / "open_set" / key)
            if deferred:
                consumers["calibration"] = ThresholdCalibration()
        if "ops" in config.tasks:
            consumers["ops"] = PanopticMetrics(minings(options, names, thresholds))
        if config.examples:
            shown_mining = minings(options, names, thresholds)[0] if "ops" in config.tasks else None
            shown_thresholds = thresholds if "oss" in config.tasks else None
            if shown_thresholds is not None and config.example_open_set is not None:
                shown_thresholds = {m: shown_thresholds[m] for m in config.example_open_set}
            consumers["examples"] = Examples(config.examples, shown_thresholds, shown_mining)
        source = DatasetSource(spec, config.max_images)
        result = run(
            source, predictor, methods, list(consumers.values()), strict=config.strict, process=process, progress=key
        )
        runs.append(_DatasetRun(key, spec, consumers, result.num_images, result.skipped))
    if not process.is_main:
        distributed.barrier(process)
        distributed.teardown(process)
        return {}, []
    metrics, reports = _collect(runs, names, config, predictor)
    for run_ in runs:
        if "anomaly" in run_.consumers:
            _replace(out / "maps" / run_.key, staging / "maps" / run_.key)
    shutil.rmtree(staging, ignore_errors=True)
    payload = json_safe(
        {
            "model": config.model,
            "input_size": predictor.describe_size(),
            "tasks": list(config.tasks),
            "methods": names,
            "protocol": config.protocol,
            "thresholds": thresholds,
            "mining": _mining_settings(options.panoptic) if "ops" in config.tasks else None,
            "maskomaly_queries": {m.name: list(m.queries) for m in methods if isinstance(m, Maskomaly)} or None,
            "datasets": metrics,
        }
    )
    write_text_atomic(out / "metrics.json", json.dumps(payload, indent=2) + "\n")
    write_text_atomic(out / "results.md", results_markdown(payload))
    intro = (
        f"<p>Model <code>{html.escape(config.model)}</code>, images {html.escape(predictor.describe_size())}. "
        "Metrics in percent. Curves are drawn from a pixel subsample; the tables are exact. "
        "Heatmaps: blue = low, red = high score.</p>"
    )
    sections = [dataset_section(r, names, config.protocol) for r in reports]
    write_text_atomic(out / "report.html", page("mask2anomaly evaluation", intro, sections))
    distributed.barrier(process)
    distributed.teardown(process)
    return payload, reports


def _collect(
    runs: list[_DatasetRun], names: list[str], config: EvaluateConfig, predictor: Predictor
) -> tuple[dict[str, dict], list[DatasetReport]]:
    metrics: dict[str, dict] = {}
    reports = []
    cross = None
    if config.open_set.cross_calibrate:
        cross = _cross_calibrated(runs, names, predictor.num_classes)
    for run_ in runs:
        entry: dict = {"spec": run_.spec, "images": run_.num_images, "skipped": run_.skipped}
        report = DatasetReport(run_.key, run_.spec, run_.num_images, run_.skipped)
        anomaly = run_.consumers.get("anomaly")
        if isinstance(anomaly, AnomalyMetrics) and run_.num_images:
            entry["anomaly"] = report.anomaly = json_safe(anomaly.result(names))
            report.curves = {name: anomaly.curves(name) for name in names}
        oss = run_.consumers.get("oss")
        if isinstance(oss, OpenIoU) and run_.num_images:
            entry["open_set_semantic"] = report.open_set_semantic = (
                cross[run_.key] if cross is not None else json_safe(oss.result())
            )
        ops = run_.consumers.get("ops")
        if isinstance(ops, PanopticMetrics) and run_.num_images:
            entry["open_panoptic"] = report.open_panoptic = json_safe(ops.result())
        examples = run_.consumers.get("examples")
        if isinstance(examples, Examples):
            report.examples = examples.examples
        metrics[run_.key] = entry
        reports.append(report)
    if cross is not None:
        metrics["cross_calibrated"] = cross["overall"]
    return metrics, reports


def _cross_calibrated(runs: list[_DatasetRun], names: list[str], num_known: int) -> dict:
    first, second = runs
    out: dict = {first.key: {}, second.key: {}, "overall": {}}
    for name in names:
        a, b = first.consumers["oss"], second.consumers["oss"]
        assert isinstance(a, OpenIoU) and isinstance(b, OpenIoU)
        result = cross_calibrated_open_iou(
            (first.key, lambda a=a, n=name: a.split(n)), (second.key, lambda b=b, n=name: b.split(n)), num_known
        )
        for key in (first.key, second.key):
            r = result.splits[key]
            out[key][name] = {
                "threshold": r.threshold,
                "miou": r.miou,
                "open_miou": r.open_miou,
                "num_images": r.num_images,
            }
        out["overall"][name] = {"miou": result.miou, "open_miou": result.open_miou}
    return json_safe(out)


def _replace(target: Path, staged: Path) -> None:
    """Put the staged folder in place of ``target`` (the previous run's output removed)."""
    if not staged.exists():
        return
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def results_markdown(payload: dict) -> str:
    """The results tables in Markdown, in percent: anomaly (AuPRC, FPR95, AUROC, sIoU, PPV, F1*),
    open-set semantic (mIoU, Open-mIoU) and panoptic (PQ known, PQ unknown), and skipped images."""
    lines = [f"Model: {payload['model']} (images {payload['input_size']}); protocol: {payload['protocol']}", ""]
    for key, entry in payload["datasets"].items():
        if key == "cross_calibrated":
            continue
        lines.append(f"## {key} ({entry['images']} images)")
        lines.append("")
        if entry["skipped"]:
            lines.append(f"Skipped ({len(entry['skipped'])}): " + "; ".join(entry["skipped"]))
            lines.append("")
        if "anomaly" in entry:
            lines += ["| method | AuPRC | FPR95 | AUROC | sIoU | PPV | F1* |", "|---|---|---|---|---|---|---|"]
            for method, m in entry["anomaly"].items():
                p, c = m["pixel"], m["component"]
                cells = [p["auprc"], p["fpr95"], p["auroc"], c["siou"], c["ppv"], c["f1_star"]]
                lines.append(f"| {method} | " + " | ".join(percent(v) for v in cells) + " |")
            lines.append("")
        if "open_set_semantic" in entry:
            lines += ["| method | threshold | mIoU | Open-mIoU |", "|---|---|---|---|"]
            for method, m in entry["open_set_semantic"].items():
                lines.append(f"| {method} | {m['threshold']:.4f} | {percent(m['miou'])} | {percent(m['open_miou'])} |")
            lines.append("")
        if "open_panoptic" in entry:
            lines += ["| mining | PQ | PQ things | PQ stuff | PQ unknown |", "|---|---|---|---|---|"]
            for mining, m in entry["open_panoptic"].items():
                cells = [m["all"]["pq"], m["things"]["pq"], m["stuff"]["pq"], m.get("unknown", {}).get("pq")]
                lines.append(f"| {mining} | " + " | ".join(percent(v) for v in cells) + " |")
            lines.append("")
    if "cross_calibrated" in payload["datasets"]:
        lines += ["## cross-calibrated (overall)", "", "| method | mIoU (pooled) | Open-mIoU (image-weighted) |"]
        lines.append("|---|---|---|")
        for method, m in payload["datasets"]["cross_calibrated"].items():
            lines.append(f"| {method} | {percent(m['miou'])} | {percent(m['open_miou'])} |")
    return "\n".join(lines) + "\n"
