"""The HTML reports: one self-contained page (no network, no scripts) per evaluation.

Per dataset: the anomaly table (pixel metrics of the run's protocol, SMIYC components), PR and ROC
curves as inline SVG, the open-set semantic table (threshold, mIoU, Open-mIoU), the open-set
panoptic table (PQ of the known classes, PQ / SQ / RQ of the unknown class), the images that were
skipped, and a grid of example pictures (inlined base64 PNG). The numbers are the ones of
``metrics.json``, formatted by :func:`percent`.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from mask2anomaly.inference.consumers.writers import Example

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} td:first-child,th:first-child{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:6px;margin-bottom:8px} figure{margin:0} figure img{width:240px;display:block}
figcaption{font-size:11px;color:#555} .curves{display:flex;gap:12px} .spec{color:#666;font-size:13px}
.warn{color:#b00}"""
"""The reports' shared style sheet."""


@dataclass
class DatasetReport:
    """What the report shows of one dataset.

    Attributes:
        key: the dataset's short name.
        spec: its ``NAME:PATH`` spec.
        num_images: images scored.
        skipped: one line per image that could not be read.
        anomaly: ``{method: metrics}`` of the anomaly task, or ``None``.
        curves: ``{method: {"recall", "precision", "fpr", "tpr"}}`` for the anomaly curves.
        open_set_semantic: ``{method: {"threshold", "miou", "open_miou"}}``, or ``None``.
        open_panoptic: ``{mining: PQ summary}``, or ``None``.
        examples: example pictures.
    """

    key: str
    spec: str
    num_images: int
    skipped: list[str] = field(default_factory=list)
    anomaly: dict[str, dict] | None = None
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    open_set_semantic: dict[str, dict] | None = None
    open_panoptic: dict[str, dict] | None = None
    examples: list[Example] = field(default_factory=list)


def percent(value: float | None) -> str:
    """A ratio in percent with two decimals, ``n/a`` for a missing value."""
    return "n/a" if value is None or value != value else f"{100 * value:.2f}"


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


def legend(methods: list[str]) -> str:
    """The colour key of the curves, one coloured square per method."""
    return " ".join(
        f'<span style="color:{PALETTE[i % len(PALETTE)]}">&#9632; {html.escape(m)}</span>'
        for i, m in enumerate(methods)
    )


def _best(values: list[float | None], highest: bool) -> float | None:
    present = [v for v in values if v is not None and v == v]
    return (max(present) if highest else min(present)) if present else None


def _cell(value: float | None, best: float | None) -> str:
    text = percent(value)
    return f"<b>{text}</b>" if value is not None and value == best else text


def anomaly_table(metrics: dict[str, dict], methods: list[str]) -> str:
    """The anomaly table: AuPRC, FPR95, AUROC, sIoU, PPV, F1* in percent, best AuPRC and FPR95 bold."""
    best_auprc = _best([metrics[m]["pixel"]["auprc"] for m in methods], highest=True)
    best_fpr = _best([metrics[m]["pixel"]["fpr95"] for m in methods], highest=False)
    rows = []
    for method in methods:
        p, c = metrics[method]["pixel"], metrics[method]["component"]
        rows.append(
            f"<tr><td>{html.escape(method)}</td><td>{_cell(p['auprc'], best_auprc)}</td>"
            f"<td>{_cell(p['fpr95'], best_fpr)}</td><td>{percent(p['auroc'])}</td>"
            f"<td>{percent(c['siou'])}</td><td>{percent(c['ppv'])}</td><td>{percent(c['f1_star'])}</td></tr>"
        )
    head = "<tr><th>method</th><th>AuPRC</th><th>FPR95</th><th>AUROC</th><th>sIoU</th><th>PPV</th><th>F1*</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def open_set_table(results: dict[str, dict]) -> str:
    """The open-set semantic table: threshold, mIoU, Open-mIoU (best bold)."""
    best = _best([v["open_miou"] for v in results.values()], highest=True)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{v['threshold']:.4f}</td><td>{percent(v['miou'])}</td>"
        f"<td>{_cell(v['open_miou'], best)}</td></tr>"
        for name, v in results.items()
    )
    return f"<table><tr><th>method</th><th>threshold</th><th>mIoU</th><th>Open-mIoU</th></tr>{rows}</table>"


def panoptic_table(results: dict[str, dict]) -> str:
    """The open-set panoptic table: PQ all / things / stuff, PQ / SQ / RQ of the unknown class."""
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td>"
        + "".join(f"<td>{percent(v.get(part, {}).get('pq'))}</td>" for part in ("all", "things", "stuff"))
        + "".join(f"<td>{percent(v.get('unknown', {}).get(m))}</td>" for m in ("pq", "sq", "rq"))
        + "</tr>"
        for key, v in results.items()
    )
    head = (
        "<tr><th>unknown mining</th><th>PQ</th><th>PQ things</th><th>PQ stuff</th><th>PQ unknown</th>"
        "<th>SQ unknown</th><th>RQ unknown</th></tr>"
    )
    return f"<table>{head}{rows}</table>"


def dataset_section(report: DatasetReport, methods: list[str], protocol: str) -> str:
    """One dataset's tables, curves, skipped images and examples."""
    parts = [
        f"<section><h2>{html.escape(report.key)}</h2><p class='spec'>{html.escape(report.spec)} — "
        f"{report.num_images} images evaluated</p>"
    ]
    if report.skipped:
        items = "".join(f"<li>{html.escape(s)}</li>" for s in report.skipped)
        parts.append(f"<p class='warn'>Skipped images ({len(report.skipped)}):</p><ul>{items}</ul>")
    if report.anomaly is not None:
        parts.append(f"<h3>Anomaly segmentation ({html.escape(protocol)} protocol)</h3>")
        parts.append(anomaly_table(report.anomaly, methods))
        parts.append(
            f"<div class='curves'>{_svg_curve(report.curves, 'recall', 'precision', 'precision-recall', methods)}"
            f"{_svg_curve(report.curves, 'fpr', 'tpr', 'ROC', methods)}</div><p>{legend(methods)}</p>"
        )
    if report.open_set_semantic is not None:
        parts.append("<h3>Open-set semantic segmentation</h3>")
        parts.append(open_set_table(report.open_set_semantic))
    if report.open_panoptic is not None:
        parts.append("<h3>Open-set panoptic segmentation</h3>")
        parts.append(panoptic_table(report.open_panoptic))
    if report.examples:
        rows = "".join(
            f'<div class="row">{"".join(figure(picture, caption) for caption, picture in e.pictures)}</div>'
            for e in report.examples
        )
        parts.append(f"<h3>Examples</h3>{rows}")
    parts.append("</section>")
    return "".join(parts)


def page(title: str, intro: str, sections: list[str]) -> str:
    """A whole page: ``intro`` is HTML, ``sections`` from :func:`dataset_section`."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
{STYLE}
</style></head><body>
<h1>{html.escape(title)}</h1>
{intro}
{"".join(sections)}
</body></html>
"""
