"""The main job end to end on the built-in synthetic benchmark (``mask2anomaly demo``, ``make demo``).

With the model shipped in the package (or one retrained from scratch with the ``synthetic_cpu``
recipes, or any given checkpoint):

1. write a synthetic test split and a calibration split (another seed) to disk in the benchmark
   layouts (``make-synthetic``), read back with the ``validation`` and ``coco_panoptic`` readers;
2. choose Maskomaly's anomaly queries on the calibration split (its indices belong to a checkpoint);
3. **anomaly segmentation**: every method on the test split, pixel and component metrics, curves and
   heatmaps (:func:`~mask2anomaly.engine.evaluate.evaluate_runs`, full report in ``OUT/anomaly/``);
4. **open-set semantic segmentation**: each method's threshold calibrated at TPR > 95% on the
   calibration split, mIoU and Open-mIoU on the test split;
5. **open-set panoptic segmentation**: known segments by the panoptic merge; unknown instances mined
   the paper's way (method-free) and the RbA way from each method's score at its calibrated
   threshold; PQ / SQ / RQ of known and unknown classes.

Writes ``OUT/metrics.json`` (``{"anomaly", "open_set_semantic", "open_panoptic"}``) and the
self-contained ``OUT/report.html``.
"""

from __future__ import annotations

import html
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mask2anomaly import data as datasets
from mask2anomaly.data.base import UNKNOWN
from mask2anomaly.data.classes import TRAIN_ID_COLORS
from mask2anomaly.data.synthetic import VERSION as SYNTHETIC_VERSION
from mask2anomaly.data.synthetic import write_benchmark
from mask2anomaly.engine.evaluate import DatasetRun, evaluate_runs, heatmap
from mask2anomaly.engine.inference import Predictor, open_model
from mask2anomaly.engine.open_set import add_panoptic, open_set_truth, panoptic_metric, panoptic_summary
from mask2anomaly.engine.query_selection import select_queries
from mask2anomaly.engine.recipes import load_recipe
from mask2anomaly.engine.report import STYLE, anomaly_section, figure, percent
from mask2anomaly.engine.score_maps import json_safe
from mask2anomaly.engine.trainer import train_or_reuse
from mask2anomaly.errors import UserError
from mask2anomaly.io_utils import write_text_atomic
from mask2anomaly.methods import AnomalyMethod, parse_method, score_methods
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic
from mask2anomaly.metrics import OpenSetConfusion, PixelMetrics, calibrate_threshold

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

SHOWN = ("mask2anomaly", "mask2anomaly+refine")
"""The methods whose open-set semantic maps the report shows (the score map: the last one's)."""


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
        retrain: train both stages from scratch first (``synthetic_cpu`` then ``synthetic_cpu_contrastive``).
        train_overrides: ``key=value`` recipe overrides applied to both training stages.
        device: where inference and training run.
    """

    model: str | None = None
    test_images: int = 100
    calibration_images: int = 50
    size: tuple[int, int] = (256, 512)
    seed: int = 0
    examples: int = 4
    retrain: bool = False
    train_overrides: tuple[str, ...] = ()
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.test_images < 1 or self.calibration_images < 1:
            raise UserError("the demo needs at least one test and one calibration image")
        if self.model is not None and self.retrain:
            raise UserError("give either a model or --retrain, not both")


def retrain(out: Path, overrides: tuple[str, ...], device: str) -> Path:
    """Train ``synthetic_cpu`` (closed set) then ``synthetic_cpu_contrastive`` under ``out``; the final checkpoint.

    Finished stages are reused and an interrupted one resumed, so an interrupted ``--retrain`` continues.
    """
    stage1 = train_or_reuse(load_recipe("synthetic_cpu", list(overrides)), out / "stage1", device)
    stage2 = load_recipe("synthetic_cpu_contrastive", [*overrides, f"train.init={stage1}"])
    return train_or_reuse(stage2, out / "contrastive", device)


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


def _thresholds(predictor: Predictor, spec: str, methods: list[AnomalyMethod]) -> dict[str, float]:
    """Each method's TPR-95 threshold on the calibration split."""
    reader = datasets.open_spec(spec)
    pixels = {m.name: PixelMetrics() for m in methods}
    for index in tqdm(range(len(reader)), desc="calibration", unit="img"):
        sample = reader[index]
        assert sample.anomaly is not None
        frame = predictor.context(sample.image, any(m.needs_flip for m in methods))
        for name, score in score_methods(frame.ctx, methods).items():
            pixels[name].update(frame.to_original(score.float())[0].cpu().numpy(), sample.anomaly)
    return {name: calibrate_threshold(state) for name, state in pixels.items()}


def _colour_panoptic(ids: np.ndarray, segments: list[dict], image: np.ndarray) -> np.ndarray:
    """Segments in distinct colours over the image, unknown instances in magenta with a white border."""
    rng = np.random.default_rng(0)
    out = (0.35 * image).astype(np.float64)
    for segment in segments:
        where = ids == segment["id"]
        colour = np.array([255, 0, 255]) if segment["category_id"] == UNKNOWN else rng.integers(40, 230, 3)
        out[where] = 0.4 * out[where] + 0.6 * colour
        if segment["category_id"] == UNKNOWN:
            inside = np.roll(where, 1, 0) & np.roll(where, -1, 0) & np.roll(where, 1, 1) & np.roll(where, -1, 1)
            edge = where & ~inside
            out[edge] = 255
    return out.astype(np.uint8)


def _semantic_colours(labels: np.ndarray, num_known: int) -> np.ndarray:
    """Cityscapes colours; the unknown class ``num_known`` in white (the palette has no white)."""
    colours = np.zeros((256, 3), np.uint8)
    colours[: len(TRAIN_ID_COLORS)] = TRAIN_ID_COLORS
    colours[num_known] = (255, 255, 255)
    return colours[labels]


def _open_set(
    predictor: Predictor,
    spec: str,
    methods: list[AnomalyMethod],
    thresholds: dict[str, float],
    examples: int,
) -> tuple[dict, dict, list[list[str]]]:
    """One pass over the test split: Open-IoU per method, PQ per mining, report figures."""
    reader = datasets.open_spec(spec)
    k = predictor.num_classes
    confusion = {m.name: OpenSetConfusion(k, thresholds[m.name]) for m in methods}
    paper = OpenSetPanoptic(mining="paper")
    by_score = {m.name: OpenSetPanoptic(mining="rba", score_threshold=thresholds[m.name]) for m in methods}
    quality = {"paper": panoptic_metric(k), **{f"rba:{m.name}": panoptic_metric(k) for m in methods}}
    rows = []
    for index in tqdm(range(len(reader)), desc="open set", unit="img"):
        sample = reader[index]
        if sample.semantic is None:
            raise UserError(f"{spec}: open-set evaluation needs semantic labels")
        frame = predictor.context(sample.image, any(m.needs_flip for m in methods))
        scores = score_methods(frame.ctx, methods, closed_set=True)
        closed = frame.to_original(frame.ctx.class_argmax, nearest=True)[0].cpu().numpy()
        truth = open_set_truth(sample.semantic, k)
        for name, score in scores.items():
            confusion[name].update(closed, frame.to_original(score.float())[0].cpu().numpy(), truth, sample.name)
        mined = paper(frame.ctx)[0]
        add_panoptic(quality["paper"], sample, frame, mined)
        for name, score in scores.items():
            add_panoptic(quality[f"rba:{name}"], sample, frame, by_score[name](frame.ctx, score)[0])
        if index < examples:
            maps = {name: frame.to_original(scores[name].float())[0].cpu().numpy() for name in SHOWN}
            ids = frame.to_original(mined.ids[None], nearest=True)[0].cpu().numpy()
            shown = np.where(truth[..., None] == 255, 0, _semantic_colours(np.minimum(truth, 255), k))
            row = [
                figure(sample.image, sample.name),
                figure(shown.astype(np.uint8), "ground truth (unknown in white, void black)"),
                figure(heatmap(maps[SHOWN[-1]], sample.image), f"{SHOWN[-1]} score"),
                figure(_semantic_colours(closed, k), "closed-set prediction"),
            ]
            for name, score in maps.items():
                labels = np.where(score >= thresholds[name], k, closed)
                row.append(figure(_semantic_colours(labels, k), f"open-set semantic, {name}"))
            row.append(figure(_colour_panoptic(ids, mined.segments, sample.image), "open-set panoptic (paper mining)"))
            rows.append(row)
    semantic = {}
    for name, state in confusion.items():
        result = state.compute()
        semantic[name] = {"threshold": thresholds[name], "miou": result.miou, "open_miou": result.open_miou}
    panoptic = {key: panoptic_summary(state) for key, state in quality.items()}
    return semantic, panoptic, rows


def _demo_methods(predictor: Predictor, calibration_spec: str) -> tuple[list[AnomalyMethod], list[int]]:
    selection = select_queries(predictor, calibration_spec)
    queries = [int(q) for q in selection.queries]
    methods = [
        parse_method(name, anomaly_queries=tuple(queries), rejected_queries=())
        if name == "maskomaly"
        else parse_method(name)
        for name in METHODS
    ]
    return methods, queries


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
    if config.retrain:
        model = str(retrain(out / "train", config.train_overrides, config.device))
    elif config.model is not None:
        model = config.model
    else:
        if not SHIPPED_MODEL.exists():
            raise UserError(f"{SHIPPED_MODEL}: the shipped model is missing; reinstall or run with --retrain")
        model = str(SHIPPED_MODEL)
    test, calibration = write_splits(out / "data", config)
    test_anomaly, calibration_anomaly = f"validation:{test / 'anomaly'}", f"validation:{calibration / 'anomaly'}"
    test_panoptic = f"coco_panoptic:{test / 'openset_panoptic' / 'panoptic_test.json'}?unknown=synthetic"
    predictor = open_model(model, config.device)
    if not predictor.is_mask_model:
        raise UserError(f"{model}: the demo needs a mask transformer")
    methods, queries = _demo_methods(predictor, calibration_anomaly)
    names = [m.name for m in methods]
    runs = evaluate_runs(model, [test_anomaly], methods, out / "anomaly", num_examples=config.examples)
    thresholds = _thresholds(predictor, calibration_anomaly, methods)
    semantic, panoptic, rows = _open_set(predictor, test_panoptic, methods, thresholds, config.examples)
    metrics = json_safe({"anomaly": runs[0].metrics, "open_set_semantic": semantic, "open_panoptic": panoptic})
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    elapsed = time.perf_counter() - start
    page = _page(model, _origin(config), config, names, queries, runs[0], semantic, panoptic, rows, elapsed)
    write_text_atomic(out / "report.html", page)
    return metrics


def _page(
    model: str,
    origin: str,
    config: DemoConfig,
    names: list[str],
    queries: list[int],
    run: DatasetRun,
    semantic: dict,
    panoptic: dict,
    rows: list[list[str]],
    elapsed: float,
) -> str:
    best_open = max(semantic.values(), key=lambda v: v["open_miou"] or -1)["open_miou"]
    semantic_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{v['threshold']:.4f}</td><td>{percent(v['miou'])}</td>"
        f"<td>{'<b>' if v['open_miou'] == best_open else ''}{percent(v['open_miou'])}</td></tr>"
        for name, v in semantic.items()
    )
    panoptic_rows = "".join(
        f"<tr><td>{html.escape(key)}</td>"
        + "".join(f"<td>{percent(v.get(part, {}).get('pq'))}</td>" for part in ("all", "things", "stuff"))
        + "".join(f"<td>{percent(v.get('unknown', {}).get(m))}</td>" for m in ("pq", "sq", "rq"))
        + "</tr>"
        for key, v in panoptic.items()
    )
    grid = "".join(f'<div class="row">{"".join(cells)}</div>' for cells in rows)
    height, width = config.size
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mask2anomaly demo</title>
<style>
{STYLE}
</style></head><body>
<h1>mask2anomaly demo: the synthetic street-scene benchmark</h1>
<p>Model <code>{html.escape(Path(model).name)}</code>, {origin}. {config.test_images} test scenes and
{config.calibration_images} calibration scenes of {height}x{width} (seeds {config.seed} and {config.seed + 1}),
generated in the benchmark layouts under <code>data/</code>. Maskomaly's anomaly queries, chosen on the
calibration split: {", ".join(map(str, queries))}. Whole run: {elapsed:.0f} s.</p>
<h2>Anomaly segmentation</h2>
<p>Pixel metrics exact and pooled over the split, SMIYC component metrics; in percent. The same section,
with the maps, is in <a href="anomaly/report.html">anomaly/report.html</a>.</p>
{anomaly_section(run, names)}
<h2>Open-set semantic segmentation</h2>
<p>The closed-set argmax, with pixels whose score reaches the method's threshold (TPR &gt; 95% on the
calibration split) set to the unknown class; mIoU over the known classes, Open-mIoU with the unknown
class (best in bold).</p>
<table><tr><th>method</th><th>threshold</th><th>mIoU</th><th>Open-mIoU</th></tr>{semantic_rows}</table>
<h2>Open-set panoptic segmentation</h2>
<p>Known segments by Mask2Former's panoptic merge; unknown instances mined the paper's way
(<code>paper</code>) or, RbA style, as components of the method's score above its calibrated threshold
on unclaimed pixels (<code>rba:METHOD</code>). PQ of the known classes (all, things, stuff) and PQ / SQ /
RQ of the unknown class, in percent.</p>
<table><tr><th>unknown mining</th><th>PQ</th><th>PQ things</th><th>PQ stuff</th><th>PQ unknown</th>
<th>SQ unknown</th><th>RQ unknown</th></tr>{panoptic_rows}</table>
<h3>Examples</h3>{grid}
</body></html>
"""
