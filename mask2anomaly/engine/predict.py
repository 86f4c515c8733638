"""``mask2anomaly predict``: anomaly maps, open-set semantic labels or open-set panoptic segments of
images, written per image.

Tasks:

* ``anomaly``: ``<stem>_<method>.npy`` (float32 scores at the image's resolution, higher = more
  anomalous) and ``<stem>_<method>.png`` (the heatmap over the image) for every method;
* ``oss``: ``<stem>_oss.png`` (uint8 class ids, K = unknown) from the first method's score and a
  threshold, plus a coloured ``<stem>_oss_color.png``;
* ``ops``: ``<stem>_panoptic.png`` (COCO panoptic RGB ids) and one ``panoptic.json`` with every
  image's ``segments_info`` (unknown instances get the category ``--unknown-category``).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mask2anomaly.data.base import IMAGE_EXTENSIONS, read_image
from mask2anomaly.data.classes import TRAIN_ID_COLORS
from mask2anomaly.data.coco_panoptic import encode_panoptic_png
from mask2anomaly.engine.evaluate import heatmap
from mask2anomaly.engine.inference import open_model
from mask2anomaly.errors import UserError
from mask2anomaly.io_utils import save_npy_atomic, save_png_atomic, write_text_atomic
from mask2anomaly.methods import parse_method, score_methods
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic

TASKS = ("anomaly", "oss", "ops")
UNKNOWN_COLOR = (255, 0, 255)


def input_images(source: str | Path) -> list[Path]:
    """The image files named by ``source``: one file, or every image of a folder (sorted)."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise UserError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        return files
    raise UserError(f"{path}: no such file or folder")


def predict(
    model: str,
    source: str | Path,
    out: str | Path,
    methods: list[str],
    task: str = "anomaly",
    short_side: int | None = None,
    threshold: float | None = None,
    mining: str = "paper",
    unknown_category: int = -1,
    strict: bool = False,
    device: str = "cpu",
) -> list[str]:
    """Run ``task`` on every image of ``source``; returns the names of the images written."""
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if task == "oss" and threshold is None:
        raise UserError("task oss needs --threshold: the anomaly score above which a pixel is unknown")
    out = Path(out)
    parsed = [parse_method(name) for name in methods]
    predictor = open_model(model, device)
    predictor.check_methods(parsed)
    panoptic = None
    if task == "ops":
        if not predictor.is_mask_model:
            raise UserError("task ops needs a mask transformer")
        panoptic = OpenSetPanoptic(unknown_category=unknown_category, mining=mining, score_threshold=threshold)
    files = input_images(source)
    written, annotations = [], []
    for path in tqdm(files, desc="predict", unit="img"):
        try:
            image = read_image(path)
        except UserError as err:
            if strict:
                raise
            warnings.warn(f"skipped: {err}", stacklevel=1)
            continue
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)
        frame = predictor.context(image, any(m.needs_flip for m in parsed), short_side)
        raw = score_methods(frame.ctx, parsed, closed_set=task == "oss")
        scores = {name: frame.to_original(s.float()) for name, s in raw.items()}
        if task == "anomaly":
            for name, score in scores.items():
                array = score[0].cpu().numpy()
                save_npy_atomic(out / f"{stem}_{name}.npy", array.astype(np.float32))
                save_png_atomic(out / f"{stem}_{name}.png", heatmap(array, image))
        elif task == "oss":
            closed = frame.to_original(frame.ctx.class_argmax, nearest=True)[0]
            first = scores[parsed[0].name][0]
            labels = torch.where(first >= threshold, torch.full_like(closed, predictor.num_classes), closed)
            labels = labels.cpu().numpy().astype(np.uint8)
            save_png_atomic(out / f"{stem}_oss.png", labels)
            colors = np.vstack([TRAIN_ID_COLORS, np.zeros((256 - len(TRAIN_ID_COLORS), 3), np.uint8)])
            colors[predictor.num_classes] = UNKNOWN_COLOR
            save_png_atomic(out / f"{stem}_oss_color.png", colors[labels])
        else:
            assert panoptic is not None
            network_scores = parsed[0](frame.ctx) if mining == "rba" else None
            result = panoptic(frame.ctx, network_scores)[0]
            ids = frame.to_original(result.ids[None], nearest=True)[0].cpu().numpy()
            present, areas = np.unique(ids, return_counts=True)
            area = dict(zip(present.tolist(), areas.tolist(), strict=True))
            segments = [replace_area(s, area.get(s["id"], 0)) for s in result.segments if area.get(s["id"], 0)]
            save_png_atomic(out / f"{stem}_panoptic.png", encode_panoptic_png(ids))
            annotations.append({"image_id": stem, "file_name": f"{stem}_panoptic.png", "segments_info": segments})
        written.append(path.name)
    if task == "ops":
        write_text_atomic(out / "panoptic.json", json.dumps({"annotations": annotations}, indent=1) + "\n")
    return written


def replace_area(segment: dict[str, int], area: int) -> dict[str, int]:
    """A segment's info with the area counted at the image's resolution."""
    return {**segment, "area": int(area)}
