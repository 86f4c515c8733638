"""Consumers that write what the loop produced: score maps and heatmaps, open-set label PNGs, COCO
panoptic PNGs and JSON, and the example thumbnails of the reports.

Every file is written atomically by the loop's writer thread and named after the image's unique
output stem, so that no two inputs and no half-written file ever share a name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mask2anomaly.data.coco_panoptic import encode_panoptic_png
from mask2anomaly.inference.consumers.panoptic import Mining
from mask2anomaly.inference.loop import Consumer, RunSetup
from mask2anomaly.inference.outputs import ImageOutputs
from mask2anomaly.io_utils import save_jpeg_atomic, save_npy_atomic, save_png_atomic, write_text_atomic
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic
from mask2anomaly.methods.open_set_semantic import open_set_labels
from mask2anomaly.viz.images import class_colours, heatmap, panoptic_colours, thumbnail, truth_overlay


def file_key(key: str) -> str:
    """A mining key (``rba:msp``) as a file-name part (``rba-msp``)."""
    return key.replace(":", "-").replace("+", "-")


def save_overlay(path: Path, score: np.ndarray, image: np.ndarray) -> None:
    """The heatmap of ``score`` over ``image``, as a JPEG (drawn by the writer thread)."""
    save_jpeg_atomic(path, heatmap(score, image))


class ScoreMapWriter(Consumer):
    """``<stem>_<method>.npy`` (float32 scores at the image's size) and ``<stem>_<method>.jpg``
    (heatmap over the image) for every method."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.written = 0

    def update(self, outputs: ImageOutputs) -> None:
        stem, image = outputs.item.stem, outputs.item.image
        for name in self.setup.method_names:
            score = outputs.score(name)
            self.setup.write(save_npy_atomic, self.out / f"{stem}_{name}.npy", score)
            self.setup.write(save_overlay, self.out / f"{stem}_{name}.jpg", score, image)
        self.written += 1


class OpenSetWriter(Consumer):
    """``<stem>_<method>_oss.png`` (uint8 class ids, K = unknown) and ``<stem>_<method>_oss_color.png``
    for every method, at its threshold."""

    needs_closed_set = True

    def __init__(self, out: Path, thresholds: dict[str, float]) -> None:
        self.out = Path(out)
        self.thresholds = thresholds

    def update(self, outputs: ImageOutputs) -> None:
        k = self.setup.labels.num_classes
        for name in self.setup.method_names:
            labels = open_set_labels(outputs.closed_set, outputs.score(name), self.thresholds[name], k)
            self.setup.write(save_png_atomic, self.out / f"{outputs.item.stem}_{name}_oss.png", labels)
            self.setup.write(
                save_png_atomic, self.out / f"{outputs.item.stem}_{name}_oss_color.png", class_colours(labels, k)
            )


class PanopticWriter(Consumer):
    """``<stem>_<mining>_panoptic.png`` (COCO panoptic RGB ids) for every mining, and at the end
    ``panoptic_<mining>.json`` with every image's ``segments_info`` (:meth:`finish`)."""

    def __init__(self, out: Path, minings: list[Mining]) -> None:
        self.out = Path(out)
        self.minings = minings
        self.annotations: dict[str, list[dict]] = {m.key: [] for m in minings}

    def start(self, setup: RunSetup) -> None:
        super().start(setup)
        things = tuple(sorted(setup.labels.things))
        self.configs = [OpenSetPanoptic(**{**vars(m.config), "thing_ids": things}) for m in self.minings]

    def update(self, outputs: ImageOutputs) -> None:
        stem = outputs.item.stem
        for mining, config in zip(self.minings, self.configs, strict=True):
            prediction = outputs.panoptic(config, mining.method)
            name = f"{stem}_{file_key(mining.key)}_panoptic.png"
            self.setup.write(save_png_atomic, self.out / name, encode_panoptic_png(prediction.ids))
            annotation = {"image_id": stem, "file_name": name, "segments_info": prediction.segments}
            self.annotations[mining.key].append(annotation)

    def merge(self, other: Consumer) -> None:
        assert isinstance(other, PanopticWriter)
        for key, items in other.annotations.items():
            self.annotations[key].extend(items)

    def finish(self) -> None:
        """Write the JSON files (images in stem order)."""
        for key, items in self.annotations.items():
            items = sorted(items, key=lambda a: a["image_id"])
            write_text_atomic(self.out / f"panoptic_{file_key(key)}.json", json.dumps({"annotations": items}) + "\n")


@dataclass
class Example:
    """Thumbnails of one image: the image, its ground truth and one picture per output.

    Attributes:
        name: the image's name.
        pictures: ``(caption, (H, W, 3) uint8)`` in display order.
    """

    name: str
    pictures: list[tuple[str, np.ndarray]] = field(default_factory=list)


class Examples(Consumer):
    """Thumbnails of the first ``count`` images for the reports: the image, the ground truth, each
    method's heatmap, and, when given, the open-set map of each method of ``thresholds`` and the
    panoptic segments of ``mining``."""

    def __init__(
        self,
        count: int,
        thresholds: dict[str, float] | None = None,
        mining: Mining | None = None,
        width: int = 320,
    ) -> None:
        self.count = count
        self.thresholds = thresholds
        self.mining = mining
        self.width = width
        self.needs_closed_set = thresholds is not None
        self.examples: list[Example] = []

    def start(self, setup: RunSetup) -> None:
        super().start(setup)
        if self.mining is not None:
            things = tuple(sorted(setup.labels.things))
            self.config = OpenSetPanoptic(**{**vars(self.mining.config), "thing_ids": things})

    def update(self, outputs: ImageOutputs) -> None:
        if outputs.item.index >= self.count:
            return
        image, sample, k = outputs.item.image, outputs.sample, self.setup.labels.num_classes
        example = Example(outputs.item.name, [("image", thumbnail(image, self.width))])
        if sample is not None and sample.anomaly is not None:
            example.pictures.append(("ground truth", thumbnail(truth_overlay(image, sample.anomaly), self.width)))
        for name in self.setup.method_names:
            example.pictures.append((name, thumbnail(heatmap(outputs.score(name), image), self.width)))
        if self.thresholds is not None:
            example.pictures.append(("closed set", thumbnail(class_colours(outputs.closed_set, k), self.width)))
            for name in self.thresholds:
                labels = open_set_labels(outputs.closed_set, outputs.score(name), self.thresholds[name], k)
                example.pictures.append((f"open set, {name}", thumbnail(class_colours(labels, k), self.width)))
        if self.mining is not None:
            panoptic = outputs.panoptic(self.config, self.mining.method)
            colours = panoptic_colours(panoptic.ids, panoptic.segments, image)
            example.pictures.append((f"panoptic, {self.mining.key}", thumbnail(colours, self.width)))
        self.examples.append(example)

    def merge(self, other: Consumer) -> None:
        assert isinstance(other, Examples)
        self.examples = sorted(self.examples + other.examples, key=lambda e: e.name)
