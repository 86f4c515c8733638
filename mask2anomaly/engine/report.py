"""The evaluation report: one self-contained HTML page (no network, no scripts) with the results
table, PR and ROC curves per dataset as inline SVG, and a grid of example images with each
method's heatmap beside the ground truth (images inlined as base64 PNG)."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mask2anomaly.io_utils import write_text_atomic

if TYPE_CHECKING:
    from mask2anomaly.engine.evaluate import DatasetRun

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


@dataclass
class Example:
    """Thumbnails of one image: the image, the ground truth overlay and each method's heatmap."""

    name: str
    image: np.ndarray
    truth: np.ndarray
    maps: dict[str, np.ndarray]


def _png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def figure(array: np.ndarray, caption: str) -> str:
    """An inline PNG with a caption."""
    text = html.escape(caption)
    return f'<figure><img src="{_png(array)}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _svg_curve(curves: dict[str, dict[str, list[float]]], x: str, y: str, title: str, methods: list[str]) -> str:
    size, pad = 260, 36
    parts = [
        f'<svg width="{size + 2 * pad}" height="{size + 2 * pad}" xmlns="http://www.w3.org/2000/svg" role="img">',
        f'<text x="{pad + size / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
        f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#888"/>',
        f'<text x="{pad + size / 2}" y="{size + 2 * pad - 6}" text-anchor="middle" font-size="11">{x}</text>',
        f'<text x="10" y="{pad + size / 2}" font-size="11" transform="rotate(-90 10 {pad + size / 2})" '
        f'text-anchor="middle">{y}</text>',
    ]
    for index, method in enumerate(methods):
        curve = curves.get(method) or {}
        if not curve:
            continue
        points = " ".join(
            f"{pad + size * a:.1f},{pad + size * (1 - b):.1f}" for a, b in zip(curve[x], curve[y], strict=True)
        )
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
    parts.append("</svg>")
    return "".join(parts)


def percent(value: float | None) -> str:
    """A ratio in percent with two decimals, ``n/a`` for a missing value."""
    return "n/a" if value is None or value != value else f"{100 * value:.2f}"


def legend(methods: list[str]) -> str:
    """The colour key of the curves, one coloured square per method."""
    return " ".join(
        f'<span style="color:{PALETTE[i % len(PALETTE)]}">&#9632; {html.escape(m)}</span>'
        for i, m in enumerate(methods)
    )


def anomaly_section(run: DatasetRun, methods: list[str]) -> str:
    """One dataset's results: the table (best AuPRC and FPR95 in bold), the curves and the examples."""
    rows = []
    best = {
        "auprc": max((run.metrics[m]["pixel"]["auprc"] or -1) for m in methods),
        "fpr95": min(
            (run.metrics[m]["pixel"]["fpr95"] if run.metrics[m]["pixel"]["fpr95"] is not None else 2)
            for m in methods
        ),
    }
    for method in methods:
        p, c = run.metrics[method]["pixel"], run.metrics[method]["component"]
        auprc = f"<b>{percent(p['auprc'])}</b>" if p["auprc"] == best["auprc"] else percent(p["auprc"])
        fpr = f"<b>{percent(p['fpr95'])}</b>" if p["fpr95"] == best["fpr95"] else percent(p["fpr95"])
        rows.append(
            f"<tr><td>{html.escape(method)}</td><td>{auprc}</td><td>{fpr}</td><td>{percent(p['auroc'])}</td>"
            f"<td>{percent(c['siou'])}</td><td>{percent(c['ppv'])}</td><td>{percent(c['f1_star'])}</td></tr>"
        )
    grid = []
    for example in run.examples:
        cells = [figure(example.image, example.name), figure(example.truth, "ground truth")]
        cells += [figure(example.maps[m], m) for m in methods if m in example.maps]
        grid.append(f'<div class="row">{"".join(cells)}</div>')
    skipped = (
        "<p class='warn'>Skipped images:</p><ul>"
        + "".join(f"<li>{html.escape(s)}</li>" for s in run.skipped)
        + "</ul>"
        if run.skipped
        else ""
    )
    return (
        f"<section><h2>{html.escape(run.key)}</h2><p class='spec'>{html.escape(run.spec)} — "
        f"{run.num_images - len(run.skipped)} images evaluated</p>{skipped}"
        "<table><tr><th>method</th><th>AuPRC</th><th>FPR95</th><th>AUROC</th><th>sIoU</th><th>PPV</th><th>F1*</th></tr>"
        f"{''.join(rows)}</table>"
        f"<div class='curves'>{_svg_curve(run.curves, 'recall', 'precision', 'precision-recall', methods)}"
        f"{_svg_curve(run.curves, 'fpr', 'tpr', 'ROC', methods)}</div><p>{legend(methods)}</p>"
        f"<h3>Examples</h3>{''.join(grid)}</section>"
    )


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} td:first-child,th:first-child{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:6px;margin-bottom:8px} figure{margin:0} figure img{width:240px;display:block}
figcaption{font-size:11px;color:#555} .curves{display:flex;gap:12px} .spec{color:#666;font-size:13px}
.warn{color:#b00}"""
"""The reports' shared style sheet."""


def write_report(path: Path, runs: list[DatasetRun], methods: list[str], model: str) -> None:
    """Write the HTML report of an evaluation atomically."""
    sections = [anomaly_section(run, methods) for run in runs]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mask2anomaly evaluation</title>
<style>
{STYLE}
</style></head><body>
<h1>mask2anomaly evaluation</h1>
<p>Model: <code>{html.escape(model)}</code>. Metrics in percent: pixel AuPRC, FPR at 95% TPR and AUROC
(exact, pooled over the dataset), SMIYC component sIoU, PPV and F1*. Best AuPRC and FPR95 in bold.
Curves are drawn from a pixel subsample; the table is exact. Heatmaps: blue = low, red = high score.</p>
{"".join(sections)}
</body></html>
"""
    write_text_atomic(path, page)
