"""Open-set panoptic segmentation in the loop: PQ / SQ / RQ of known and unknown classes.

Known segments come from Mask2Former's merge with the things of the dataset's label space; unknown
instances are mined as each :class:`~mask2anomaly.methods.open_set_panoptic.OpenSetPanoptic`
configuration says (the paper's procedure without a method, or RbA's from a method's score). The
predictions, mapped back to the image's size, are scored with panopticapi's PQ and EOPSN's unknown
class against the dataset's panoptic ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

from mask2anomaly.data.base import UNKNOWN_CATEGORY
from mask2anomaly.errors import UserError
from mask2anomaly.inference.loop import Consumer, RunSetup
from mask2anomaly.inference.outputs import ImageOutputs
from mask2anomaly.methods.open_set_panoptic import OpenSetPanoptic
from mask2anomaly.metrics import PanopticQuality


@dataclass(frozen=True)
class Mining:
    """One way of finding unknown instances, reported under ``key``.

    Attributes:
        key: ``"paper"``, ``"none"`` or ``"rba:METHOD"``.
        config: the panoptic inference (its ``thing_ids`` are replaced by the dataset's things).
        method: the method whose score RbA mining thresholds, or ``None``.
    """

    key: str
    config: OpenSetPanoptic
    method: str | None = None


def panoptic_summary(quality: PanopticQuality) -> dict[str, dict[str, float]]:
    """``{"all" | "things" | "stuff" | "unknown": {"pq", "sq", "rq", ...}}``."""
    values = quality.compute()
    out = {name: vars(getattr(values, name)) for name in ("all", "things", "stuff")}
    if values.unknown is not None:
        out["unknown"] = vars(values.unknown)
    return out


class PanopticMetrics(Consumer):
    """PQ of every mining configuration."""

    def __init__(self, minings: list[Mining]) -> None:
        if not minings:
            raise UserError("open-set panoptic evaluation needs at least one mining configuration")
        self.minings = minings
        self.quality: dict[str, PanopticQuality] = {}

    def start(self, setup: RunSetup) -> None:
        super().start(setup)
        if not setup.predictor.is_mask_model:
            raise UserError("open-set panoptic segmentation needs a mask transformer; this model predicts per pixel")
        setup.require_model_classes("open-set panoptic segmentation")
        things = tuple(sorted(setup.labels.things))
        self.configs = [OpenSetPanoptic(**{**vars(m.config), "thing_ids": things}) for m in self.minings]
        categories = [{"id": c, "isthing": int(c in setup.labels.things)} for c in range(setup.labels.num_classes)]
        categories.append({"id": UNKNOWN_CATEGORY, "isthing": 1})
        self.quality = {m.key: PanopticQuality(categories, frozenset({UNKNOWN_CATEGORY})) for m in self.minings}

    def update(self, outputs: ImageOutputs) -> None:
        sample = outputs.sample
        if sample is None or sample.instances is None or sample.segments is None:
            raise UserError(f"{outputs.item.name}: open-set panoptic evaluation needs panoptic labels")
        gt_segments = [
            {"id": s.id, "category_id": s.category, "iscrowd": int(s.iscrowd), "area": s.area} for s in sample.segments
        ]
        for mining, config in zip(self.minings, self.configs, strict=True):
            prediction = outputs.panoptic(config, mining.method)
            self.quality[mining.key].update(
                sample.instances, gt_segments, prediction.ids, prediction.segments, source=outputs.item.name
            )

    def merge(self, other: Consumer) -> None:
        assert isinstance(other, PanopticMetrics)
        for key, state in other.quality.items():
            self.quality[key].merge(state)

    def result(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{mining key: PQ summary}``."""
        return {key: panoptic_summary(state) for key, state in self.quality.items()}
