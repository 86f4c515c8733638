"""The main job end to end on the built-in synthetic benchmark (``mask2anomaly demo``, ``make demo``).

With the model shipped in the package (or one retrained from scratch with the ``synthetic_cpu``
recipes, or any given checkpoint):

1. write a synthetic test split and a calibration split (another seed) to disk in the benchmark
   layouts (``make-synthetic``), read back by the ``validation`` and ``coco_panoptic`` readers;
2. on the calibration split, one pass of the inference loop chooses Maskomaly's anomaly queries (its
   indices belong to a checkpoint), a second calibrates every method's threshold at TPR 95%;
3. on the test split, one pass of :func:`~mask2anomaly.inference.evaluate` does every task for every
   method: **anomaly segmentation** (pixel metrics in the exact and the official Mask2Anomaly
   protocols, components, curves, heatmaps), **open-set semantic segmentation** (mIoU, Open-mIoU at
   the calibrated thresholds) and **open-set panoptic segmentation** (known segments by the
   panoptic merge; unknown instances mined the paper's way and the RbA way from each method's
   score at its threshold; PQ / SQ / RQ of known and unknown classes).

Writes ``OUT/metrics.json`` (``{"anomaly", "open_set_semantic", "open_panoptic", ...}``) and the
self-contained ``OUT/report.html``; the evaluation's own files are in ``OUT/evaluation/``.
"""

from __future__ import annotations

import html
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from mask2anomaly.data.synthetic import VERSION as SYNTHETIC_VERSION
from mask2anomaly.data.synthetic import write_benchmark
from mask2anomaly.errors import UserError
from mask2anomaly.inference import EvaluateConfig, OpenSetOptions, open_model, select_queries
from mask2anomaly.inference.evaluate import calibrate, evaluate_with_reports
from mask2anomaly.io_utils import json_safe, write_text_atomic
from mask2anomaly.methods import AnomalyMethod, parse_method
from mask2anomaly.training.recipes import load_recipe
from mask2anomaly.training.trainer import train_or_reuse
from mask2anomaly.viz.report import dataset_section, page

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
SHIPPED_MODEL = WEIGHTS / "synthetic_cpu.safetensors"
"""The model trained with the ``synthetic_cpu`` recipes."""
PROVENANCE = WEIGHTS / "synthetic_cpu.provenance.json"
"""How the shipped model was made: commands, seed, commit, wall time, final numbers."""

METHODS = (
    "msp",
    "entropy",
    "max_logit",
    "energy",
    "rba",
    "maskomaly",
    "mask2anomaly",
    "mask2anomaly+refine",
    "mask2anomaly+refine+tta",
)
"""Every method of the demo; ``maskomaly`` gets the anomaly queries chosen on the calibration split."""

DENSEHYBRID_MODEL = WEIGHTS / "synthetic_cpu_densehybrid.safetensors"
"""The shipped model fine-tuned with DenseHybrid's head and terms (``synthetic_cpu_densehybrid``)."""
DENSEHYBRID_PROVENANCE = WEIGHTS / "synthetic_cpu_densehybrid.provenance.json"

DENSEHYBRID_METHODS = ("densehybrid", "densehybrid+posterior", "densehybrid+likelihood")
"""The rows of the DenseHybrid model (a model of its own: its head comes from its training)."""

SHOWN = ("mask2anomaly", "mask2anomaly+refine")
"""The methods whose open-set semantic maps the report shows."""


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs on.

    Attributes:
        model: checkpoint to evaluate; ``None`` takes the shipped model (or the retrained one).
        test_images: synthetic test scenes evaluated.
        calibration_images: synthetic scenes (another seed) for thresholds and Maskomaly's queries.
        size: ``(H, W)`` of the scenes.
        seed: generator seed of the test split (the calibration split uses ``seed + 1``).
        examples: test images shown in the report.
        densehybrid_model: the DenseHybrid model whose rows join the tables; ``None`` takes the shipped
            one with the shipped model, the retrained one with ``retrain``, and none with ``model``.
        retrain: train both stages from scratch first (``synthetic_cpu`` then
            ``synthetic_cpu_contrastive``, and ``synthetic_cpu_densehybrid`` from the first stage).
        train_overrides: ``key=value`` recipe overrides applied to both training stages.
        device: where inference and training run (default: CUDA when available).
    """

    model: str | None = None
    densehybrid_model: str | None = None
    test_images: int = 100
    calibration_images: int = 50
    size: tuple[int, int] = (256, 512)
    seed: int = 0
    examples: int = 4
    retrain: bool = False
    train_overrides: tuple[str, ...] = ()
    device: str | None = None

    def __post_init__(self) -> None:
        if self.test_images < 1 or self.calibration_images < 1:
            raise UserError("the demo needs at least one test and one calibration image")
        if self.examples < 0:
            raise UserError("--examples must not be negative")
        if self.model is not None and self.retrain:
            raise UserError("give either a model or --retrain, not both")


def retrain(out: Path, overrides: tuple[str, ...], device: str | None) -> tuple[Path, Path]:
    """Train ``synthetic_cpu`` (closed set), then from it ``synthetic_cpu_contrastive`` and
    ``synthetic_cpu_densehybrid``, under ``out``; the two final checkpoints.

    Finished stages are reused and an interrupted one resumed, so an interrupted ``--retrain`` continues.
    """
    stage1 = train_or_reuse(load_recipe("synthetic_cpu", list(overrides)), out / "stage1", device)
    contrastive = load_recipe("synthetic_cpu_contrastive", [*overrides, f"train.init={stage1}"])
    densehybrid = load_recipe("synthetic_cpu_densehybrid", [*overrides, f"train.init={stage1}"])
    return (
        train_or_reuse(contrastive, out / "contrastive", device),
        train_or_reuse(densehybrid, out / "densehybrid", device),
    )


def write_splits(root: Path, config: DemoConfig) -> tuple[Path, Path]:
    """Write (or reuse, when the same ones are there) the test and calibration splits under ``root``.

    Each split is generated in ``<name>.partial`` and renamed when complete, so an interrupted run
    leaves no split that looks whole; a leftover ``.partial`` folder is replaced, and so is a split
    written by an older version of the generator.
    """
    folders = []
    for name, count, seed in (
        ("test", config.test_images, config.seed),
        ("calibration", config.calibration_images, config.seed + 1),
    ):
        folder = root / name
        meta = folder / "meta.json"
        wanted = {"seed": seed, "size": list(config.size), "test": count}
        if meta.exists():
            found = json.loads(meta.read_text())
            if {"seed": found["seed"], "size": found["size"], "test": found["counts"]["test"]} != wanted:
                raise UserError(f"{folder}: holds another synthetic split; remove it or choose another --out")
            if found.get("version") == SYNTHETIC_VERSION:
                folders.append(folder)
                continue
            shutil.rmtree(folder)
        partial = root / f"{name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        write_benchmark(partial, train=0, val=0, test=count, outliers=0, size=config.size, seed=seed)
        partial.rename(folder)
        folders.append(folder)
    return folders[0], folders[1]


def demo_methods(queries: tuple[int, ...]) -> list[AnomalyMethod]:
    """The demo's methods, Maskomaly with ``queries`` as its anomaly queries (and none always rejected)."""
    return [
        parse_method(name, anomaly_queries=queries) if name == "maskomaly" else parse_method(name) for name in METHODS
    ]


def _evaluate_densehybrid(
    model: str, test_spec: str, calibration_spec: str, out: Path, config: DemoConfig
) -> tuple[dict, dict[str, float], list]:
    """The DenseHybrid model's rows: its three scores on the test split (anomaly and open-set
    semantic segmentation, thresholds calibrated on the calibration split as for the other rows)."""
    methods = [parse_method(name) for name in DENSEHYBRID_METHODS]
    predictor = open_model(model, config.device)
    predictor.check_methods(methods)
    thresholds = calibrate(predictor, methods, calibration_spec)
    evaluation = EvaluateConfig(
        model=model,
        datasets=(test_spec,),
        methods=tuple(methods),
        out=out,
        tasks=("anomaly", "oss"),
        examples=min(config.examples, 2),
        also_protocols=("mask2anomaly",),
        open_set=OpenSetOptions(threshold=thresholds),
        example_open_set=("densehybrid",),
        device=config.device,
    )
    payload, reports = evaluate_with_reports(evaluation)
    (entry,) = payload["datasets"].values()
    return entry, thresholds, reports


def _origin(config: DemoConfig) -> str:
    """Where the evaluated model comes from, as HTML."""
    if config.retrain:
        overrides = " ".join(f"--set {item}" for item in config.train_overrides)
        return f"retrained from scratch in this run (recipes synthetic_cpu, synthetic_cpu_contrastive {overrides})"
    if config.model is not None:
        return "given on the command line"
    provenance = json.loads(PROVENANCE.read_text())
    commands = "<br>".join(f"<code>{html.escape(c)}</code>" for c in provenance["commands"])
    return f"shipped with the package, trained in {html.escape(provenance['wall_time'])} with<br>{commands}<br>"


def run_demo(out: str | Path, config: DemoConfig = DemoConfig()) -> dict:
    """Run the whole demo into ``out``; returns the ``metrics.json`` content."""
    out = Path(out)
    start = time.perf_counter()
    densehybrid_model = config.densehybrid_model
    if config.retrain:
        trained, densehybrid = retrain(out / "train", config.train_overrides, config.device)
        model, densehybrid_model = str(trained), densehybrid_model or str(densehybrid)
    elif config.model is not None:
        model = config.model
    else:
        if not SHIPPED_MODEL.exists():
            raise UserError(f"{SHIPPED_MODEL}: the shipped model is missing; reinstall or run with --retrain")
        model = str(SHIPPED_MODEL)
        if densehybrid_model is None and DENSEHYBRID_MODEL.exists():
            densehybrid_model = str(DENSEHYBRID_MODEL)
    test, calibration = write_splits(out / "data", config)
    calibration_spec = f"validation:{calibration / 'anomaly'}"
    test_spec = f"coco_panoptic:{test / 'openset_panoptic' / 'panoptic_test.json'}?unknown=synthetic"
    predictor = open_model(model, config.device)
    if not predictor.is_mask_model:
        raise UserError(f"{model}: the demo needs a mask transformer")
    queries = select_queries(predictor, calibration_spec).queries
    methods = demo_methods(queries)
    thresholds = calibrate(predictor, methods, calibration_spec)
    evaluation = EvaluateConfig(
        model=model,
        datasets=(test_spec,),
        methods=tuple(methods),
        out=out / "evaluation",
        tasks=("anomaly", "oss", "ops"),
        examples=config.examples,
        also_protocols=("mask2anomaly",),
        open_set=OpenSetOptions(threshold=thresholds, minings=("paper", "rba")),
        example_open_set=SHOWN,
        device=config.device,
    )
    payload, reports = evaluate_with_reports(evaluation)
    (entry,) = payload["datasets"].values()
    sections = [dataset_section(r, list(METHODS), "exact") for r in reports]
    if densehybrid_model is not None:
        dh_entry, dh_thresholds, dh_reports = _evaluate_densehybrid(
            densehybrid_model, test_spec, calibration_spec, out / "evaluation_densehybrid", config
        )
        entry["anomaly"].update(dh_entry["anomaly"])
        entry["open_set_semantic"].update(dh_entry["open_set_semantic"])
        thresholds = {**thresholds, **dh_thresholds}
        title = f"DenseHybrid model ({Path(densehybrid_model).name})"
        sections += [
            dataset_section(replace(r, key=f"{r.key}: {title}"), list(DENSEHYBRID_METHODS), "exact") for r in dh_reports
        ]
    metrics = json_safe(
        {
            "anomaly": entry["anomaly"],
            "open_set_semantic": entry["open_set_semantic"],
            "open_panoptic": entry["open_panoptic"],
            "maskomaly_queries": list(queries),
            "thresholds": thresholds,
            "images": entry["images"],
            "densehybrid_model": densehybrid_model,
        }
    )
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    elapsed = time.perf_counter() - start
    height, width = config.size
    intro = (
        f"<p>Model <code>{html.escape(Path(model).name)}</code>, {_origin(config)}. {config.test_images} test "
        f"scenes and {config.calibration_images} calibration scenes of {height}x{width} (seeds {config.seed} and "
        f"{config.seed + 1}), generated in the benchmark layouts under <code>data/</code>. Maskomaly's anomaly "
        f"queries, chosen on the calibration split: {', '.join(map(str, queries))}. Open-set thresholds: each "
        "method's first ROC point above TPR 95% on the calibration split. Unknown instances: the paper's mining "
        f"(<code>paper</code>) and RbA's from each method's score (<code>rba:METHOD</code>). Whole run: "
        f"{elapsed:.0f} s. Metrics in percent; heatmaps blue = low, red = high score; unknown class in white.</p>"
    )
    write_text_atomic(
        out / "report.html", page("mask2anomaly demo: the synthetic street-scene benchmark", intro, sections)
    )
    return metrics
