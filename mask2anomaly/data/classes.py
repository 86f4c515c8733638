"""Class metadata: label spaces, the Cityscapes label table and the COCO open-set splits.

The Cityscapes table follows the official ``cityscapesScripts`` definition (labelId, trainId,
instances, colour). The 19 trainIds are the label space of every Cityscapes-like dataset here,
the synthetic benchmark included: stuff = road .. sky (trainIds 0-10), things = person .. bicycle
(trainIds 11-18).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mask2anomaly.data.base import VOID


@dataclass(frozen=True)
class CityscapesLabel:
    """One row of the Cityscapes label table.

    Attributes:
        name: Class name.
        id: labelId (pixel value of ``*_gtFine_labelIds.png``).
        train_id: trainId (0-18), or 255 when ignored in training and evaluation.
        is_thing: Whether the class has instances (``*_instanceIds.png`` stores labelId*1000+k).
        color: RGB colour of the official visualisation.
    """

    name: str
    id: int
    train_id: int
    is_thing: bool
    color: tuple[int, int, int]


CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, VOID, False, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, VOID, False, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, VOID, False, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, VOID, False, (0, 0, 0)),
    CityscapesLabel("static", 4, VOID, False, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, VOID, False, (111, 74, 0)),
    CityscapesLabel("ground", 6, VOID, False, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, False, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, False, (244, 35, 232)),
    CityscapesLabel("parking", 9, VOID, False, (250, 170, 160)),
    CityscapesLabel("rail track", 10, VOID, False, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, False, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, False, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, False, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, VOID, False, (180, 165, 180)),
    CityscapesLabel("bridge", 15, VOID, False, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, VOID, False, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, False, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, VOID, False, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, False, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, False, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, False, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, False, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, False, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, True, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, True, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, True, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, True, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, True, (0, 60, 100)),
    CityscapesLabel("caravan", 29, VOID, True, (0, 0, 90)),
    CityscapesLabel("trailer", 30, VOID, True, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, True, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, True, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, True, (119, 11, 32)),
)

TRAIN_LABELS: tuple[CityscapesLabel, ...] = tuple(
    sorted((lab for lab in CITYSCAPES_LABELS if lab.train_id != VOID), key=lambda lab: lab.train_id)
)
"""The 19 evaluated classes, indexed by trainId."""

NUM_CLASSES = len(TRAIN_LABELS)
CLASS_NAMES: tuple[str, ...] = tuple(lab.name for lab in TRAIN_LABELS)
THING_TRAIN_IDS: frozenset[int] = frozenset(lab.train_id for lab in TRAIN_LABELS if lab.is_thing)
STUFF_TRAIN_IDS: frozenset[int] = frozenset(lab.train_id for lab in TRAIN_LABELS if not lab.is_thing)
LABEL_BY_NAME: dict[str, CityscapesLabel] = {lab.name: lab for lab in CITYSCAPES_LABELS}


def _lookup(values: dict[int, int]) -> np.ndarray:
    table = np.full(256, VOID, dtype=np.uint8)
    for k, v in values.items():
        table[k] = v
    return table


LABEL_ID_TO_TRAIN_ID: np.ndarray = _lookup({lab.id: lab.train_id for lab in CITYSCAPES_LABELS})
"""``(256,)`` uint8 lookup table: ``LABEL_ID_TO_TRAIN_ID[labelIds]`` gives trainIds."""

TRAIN_ID_TO_LABEL_ID: np.ndarray = _lookup({lab.train_id: lab.id for lab in TRAIN_LABELS})
"""``(256,)`` uint8 lookup table from trainId to labelId (void -> 255)."""

TRAIN_ID_COLORS: np.ndarray = np.array([lab.color for lab in TRAIN_LABELS], dtype=np.uint8)
"""``(19, 3)`` uint8 colours by trainId."""

LABEL_IDS: frozenset[int] = frozenset(lab.id for lab in CITYSCAPES_LABELS)

COCO_OPEN_SET_SPLITS: dict[str, tuple[str, ...]] = {
    "none": (),
    "5": ("car", "cow", "pizza", "toilet"),
    "10": ("car", "cow", "pizza", "toilet", "boat", "tie", "zebra", "stop sign"),
    "20": (
        "car",
        "cow",
        "pizza",
        "toilet",
        "boat",
        "tie",
        "zebra",
        "stop sign",
        "dining table",
        "banana",
        "bicycle",
        "cake",
        "sink",
        "cat",
        "keyboard",
        "bear",
    ),
    "synthetic": ("anomaly",),
}
"""Unknown COCO category names of each open-set split (EOPSN, cumulative), plus the synthetic one."""

ANOMALY_MIX_EXCLUDED: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "bus",
    "truck",
    "traffic light",
    "stop sign",
)
"""COCO categories an AnomalyMix outlier image must not contain (road-scene classes)."""


@dataclass(frozen=True)
class LabelSpace:
    """The known classes of a dataset or model: contiguous ids ``0 .. K-1``, names, and which are
    things (countable, one panoptic segment per instance) rather than stuff (one segment per class).

    Attributes:
        names: class names by id.
        things: ids of the thing classes.
    """

    names: tuple[str, ...]
    things: frozenset[int]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def stuff(self) -> frozenset[int]:
        """Ids of the stuff classes."""
        return frozenset(range(self.num_classes)) - self.things

    @classmethod
    def of_model(cls, predictor: Any) -> LabelSpace:
        """The label space of a model: Cityscapes' when it predicts the 19 Cityscapes classes (by
        name, or by count when it has no names), else its class names with no thing class known."""
        names = predictor.class_names
        cityscapes_by_count = names is None and predictor.num_classes == NUM_CLASSES
        if cityscapes_by_count or (names is not None and tuple(names) == CLASS_NAMES):
            return CITYSCAPES
        if names is None:
            names = tuple(f"class {i}" for i in range(predictor.num_classes))
        return cls(tuple(names), frozenset())


CITYSCAPES = LabelSpace(CLASS_NAMES, THING_TRAIN_IDS)
"""The 19 Cityscapes trainIds: things = person .. bicycle (11-18)."""
