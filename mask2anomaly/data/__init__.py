"""Dataset readers, AnomalyMix, training transforms and the synthetic street-scene benchmark.

Every reader is a torch ``Dataset`` of :class:`~mask2anomaly.data.base.Sample`. Open one by name::

    from mask2anomaly import data
    ds = data.open("road_anomaly", "../shared/data/RoadAnomaly")
    ds = data.open_spec("cityscapes:path/to/cityscapes?split=train")

The literal dict :data:`READERS` is the registry: adding a dataset is one module plus one line here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from mask2anomaly.data.base import CheckReport, Reader, Sample, Segment
from mask2anomaly.data.cityscapes import CityscapesReader
from mask2anomaly.data.coco_panoptic import CocoPanopticReader
from mask2anomaly.data.fishyscapes import FishyscapesLafReader, FishyscapesStaticReader
from mask2anomaly.data.lost_and_found import LostAndFoundReader
from mask2anomaly.data.road_anomaly import RoadAnomalyReader
from mask2anomaly.data.smiyc import SmiycReader
from mask2anomaly.data.streethazards import StreetHazardsReader
from mask2anomaly.data.synthetic import SyntheticReader
from mask2anomaly.data.validation import ValidationReader
from mask2anomaly.errors import UserError

READERS: dict[str, type[Reader]] = {
    "cityscapes": CityscapesReader,
    "validation": ValidationReader,
    "road_anomaly": RoadAnomalyReader,
    "smiyc_anomaly": SmiycReader,
    "smiyc_obstacle": SmiycReader,
    "fishyscapes_laf": FishyscapesLafReader,
    "fishyscapes_static": FishyscapesStaticReader,
    "lost_and_found": LostAndFoundReader,
    "streethazards": StreetHazardsReader,
    "coco_panoptic": CocoPanopticReader,
    "synthetic": SyntheticReader,
}
"""Reader class of every dataset name."""

_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def open(name: str, root: str | Path, **options: Any) -> Reader:
    """Open dataset ``name`` at ``root``.

    Args:
        name: A key of :data:`READERS`.
        root: Dataset folder (``coco_panoptic``: the JSON file; ``synthetic``: the generation spec).
        **options: Keyword arguments of the reader class (e.g. ``split``, ``skip_bad``).

    Raises:
        UserError: Unknown name, unknown option, or a problem with the files.
    """
    if name not in READERS:
        raise UserError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(READERS))}")
    try:
        return READERS[name](root, **options)
    except TypeError as err:
        raise UserError(f"dataset {name!r}: bad option ({err})") from None


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """Split ``NAME:PATH[?key=value&...]`` into name, path and options.

    Option values ``true``/``false`` become booleans; everything else stays a string.
    """
    name, sep, rest = spec.partition(":")
    if not sep or not name or not rest:
        raise UserError(f"dataset {spec!r}: expected NAME:PATH (names: {', '.join(sorted(READERS))})")
    path, _, query = rest.partition("?")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        options[key] = _BOOL.get(value.lower(), value)
    return name, path, options


def open_spec(spec: str, **options: Any) -> Reader:
    """Open a dataset given on the command line as ``NAME:PATH[?key=value&...]``."""
    name, path, parsed = parse_spec(spec)
    return open(name, path, **{**parsed, **options})


__all__ = ["READERS", "CheckReport", "Reader", "Sample", "Segment", "open", "open_spec", "parse_spec"]
