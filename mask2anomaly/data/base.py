"""The sample type every reader yields, label constants, and the shared reader machinery.

Every dataset reader is a torch :class:`~torch.utils.data.Dataset` of :class:`Sample` objects. A
reader indexes its files when it is built (missing or unpaired files are found then) and decodes one
sample per ``__getitem__`` (corrupt files, size mismatches and unexpected label values are found
then). Each problem is a :class:`~mask2anomaly.errors.UserError` whose one-line message names the file.
With ``skip_bad=True`` indexing problems are recorded in :attr:`Reader.problems` instead, and
:meth:`Reader.check` records decoding problems the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.utils.data
from PIL import Image

from mask2anomaly.errors import UserError

if TYPE_CHECKING:
    from mask2anomaly.data.classes import LabelSpace

VOID = 255
"""Label value ignored by every loss and metric."""

UNKNOWN = 254
"""Semantic label of an object outside the known classes: AnomalyMix pastes and open-set unknowns."""

UNKNOWN_CATEGORY = -1
"""``Segment.category`` of an unknown-class segment (the EOPSN convention for unknown PQ)."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class Segment:
    """One panoptic segment of a :class:`Sample`.

    Attributes:
        id: Value of the segment's pixels in ``Sample.instances``.
        category: Contiguous class index of the reader's label space (Cityscapes: trainId), or
            :data:`UNKNOWN_CATEGORY` for an unknown-class segment.
        is_thing: Whether the category is countable (has instances).
        iscrowd: Whether the segment is a crowd region (ignored as a false positive by PQ).
        area: Number of pixels carrying ``id``.
    """

    id: int
    category: int
    is_thing: bool
    iscrowd: bool
    area: int


@dataclass(frozen=True)
class Sample:
    """One image with the label maps its dataset provides (``None`` when it has none).

    Attributes:
        name: Identifier of the image within its dataset (file stem or relative path).
        image: ``(H, W, 3)`` uint8 RGB.
        semantic: ``(H, W)`` uint8 class indices of the dataset's label space, :data:`VOID` = void,
            :data:`UNKNOWN` = object of an unknown class.
        anomaly: ``(H, W)`` uint8, 0 = inlier, 1 = anomaly, :data:`VOID` = void.
        instances: ``(H, W)`` int32 segment ids, 0 = no segment.
        segments: The segments whose ids occur in ``instances``.
    """

    name: str
    image: np.ndarray
    semantic: np.ndarray | None = None
    anomaly: np.ndarray | None = None
    instances: np.ndarray | None = None
    segments: tuple[Segment, ...] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def replace(self, **changes: Any) -> Sample:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def recount_segments(self) -> Sample:
        """A copy whose segment areas are recounted from ``instances`` (empty segments dropped)."""
        if self.instances is None or self.segments is None:
            return self
        ids, counts = np.unique(self.instances, return_counts=True)
        area = dict(zip(ids.tolist(), counts.tolist(), strict=True))
        kept = tuple(replace(s, area=area[s.id]) for s in self.segments if area.get(s.id, 0) > 0)
        return replace(self, segments=kept)


@dataclass(frozen=True)
class Item:
    """The files of one sample, found when a reader indexes its folder.

    Attributes:
        name: Identifier of the sample.
        image: Path of the image file.
        labels: Label files by role (e.g. ``"semantic"``, ``"anomaly"``, ``"instances"``).
    """

    name: str
    image: Path
    labels: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckReport:
    """Result of :meth:`Reader.check`.

    Attributes:
        num_images: Number of indexed samples.
        label_values: Pixel count of every value of the primary label map (anomaly map if the
            dataset has one, otherwise the semantic map), over the samples that decoded.
        problems: One line per problem found (only when skipping bad input).
    """

    num_images: int
    label_values: dict[int, int]
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The report as the JSON object written by ``mask2anomaly data check --json``."""
        return {
            "num_images": self.num_images,
            "label_values": {str(k): v for k, v in sorted(self.label_values.items())},
            "problems": list(self.problems),
        }


def read_image(path: Path) -> np.ndarray:
    """Decode an image file into a writable ``(H, W, 3)`` uint8 RGB array.

    Raises:
        UserError: The file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"{path}: cannot decode image ({err})") from None


def read_label(path: Path, size: tuple[int, int] | None = None, *, image_path: Path | None = None) -> np.ndarray:
    """Decode a single-channel label PNG (8 or 16 bit) without any palette conversion.

    Args:
        path: Label file.
        size: Expected ``(H, W)`` (the image's), checked when given.
        image_path: The paired image, named in the size-mismatch message.

    Returns:
        ``(H, W)`` array: uint8 for 8-bit files, int32 for 16/32-bit files.

    Raises:
        UserError: The file is missing, corrupt, has several channels, or its size differs.
    """
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("L", "P"):
                arr = np.array(im)
            elif mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.int32)
            else:
                raise UserError(f"{path}: label must be a single-channel image, found mode {mode}")
    except FileNotFoundError:
        raise UserError(f"{path}: label file not found") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path}: cannot decode label ({err})") from None
    if size is not None and arr.shape != tuple(size):
        other = f"its image {image_path.name}" if image_path is not None else "the image"
        raise UserError(f"{path}: label is {arr.shape[1]}x{arr.shape[0]} but {other} is {size[1]}x{size[0]} (WxH)")
    return arr


def check_values(arr: np.ndarray, allowed: set[int] | range, path: Path) -> None:
    """Raise a :class:`UserError` naming ``path`` if ``arr`` holds a value outside ``allowed``."""
    values = np.unique(arr)
    bad = [int(v) for v in values if int(v) not in allowed]
    if bad:
        shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
        raise UserError(f"{path}: unexpected label values {shown}")


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise a :class:`UserError` saying what was expected."""
    if not path.is_dir():
        raise UserError(f"{path}: folder not found (expected {what})")
    return path


def list_images(folder: Path, pattern: str = "*") -> list[Path]:
    """Image files in ``folder`` matching ``pattern``, sorted by name (natural order for numbers)."""
    files = [p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(files, key=natural_key)


def natural_key(path: Path) -> tuple:
    """Sort key that orders ``2.png`` before ``10.png``."""
    stem = path.name.split(".")[0]
    return (0, int(stem), path.name) if stem.isdigit() else (1, 0, path.name)


def segments_from_ids(instances: np.ndarray, info: dict[int, tuple[int, bool, bool]]) -> tuple[Segment, ...]:
    """Build segments with pixel-counted areas.

    Args:
        instances: ``(H, W)`` int segment ids, 0 = none.
        info: ``id -> (category, is_thing, iscrowd)`` for every id to keep.
    """
    ids, counts = np.unique(instances, return_counts=True)
    return tuple(
        Segment(int(i), info[int(i)][0], info[int(i)][1], info[int(i)][2], int(c))
        for i, c in zip(ids, counts, strict=True)
        if int(i) in info
    )


class Reader(torch.utils.data.Dataset):
    """Base of every dataset reader: an indexed list of :class:`Item` decoded by :meth:`load`.

    Subclasses fill :attr:`items` in ``__init__`` (calling :meth:`_problem` for each unpaired file)
    and implement :meth:`load`.

    Attributes:
        root: The folder (or file) the reader was opened on.
        items: One entry per sample, in a stable order.
        problems: Indexing problems that were skipped (``skip_bad=True``).
        label_space: The known classes of the semantic and panoptic labels (names, things), or
            ``None`` for a dataset labelled only anomaly / inlier (the model's classes are used).
    """

    label_space: LabelSpace | None = None

    def __init__(self, root: str | Path, *, skip_bad: bool = False) -> None:
        self.root = Path(root)
        self.skip_bad = skip_bad
        self.items: list[Item] = []
        self.problems: list[str] = []

    def _problem(self, message: str) -> None:
        """Raise ``message`` as a :class:`UserError`, or record it when skipping bad input."""
        if not self.skip_bad:
            raise UserError(message)
        self.problems.append(message)

    def _require_items(self, where: Path, expected: str) -> None:
        """Raise if indexing found nothing."""
        if not self.items:
            raise UserError(f"{where}: no samples found (expected {expected})")

    @property
    def names(self) -> list[str]:
        """Sample names, in index order."""
        return [item.name for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        return self.load(self.items[index])

    def load(self, item: Item) -> Sample:
        """Decode the files of one item."""
        raise NotImplementedError

    def check(self, *, skip_bad: bool | None = None) -> CheckReport:
        """Decode every sample, verify it, and histogram its primary label map.

        Args:
            skip_bad: Record decoding problems and continue instead of raising; defaults to the
                reader's own ``skip_bad``.
        """
        skip = self.skip_bad if skip_bad is None else skip_bad
        problems = list(self.problems)
        hist: Counter[int] = Counter()
        for index in range(len(self)):
            try:
                sample = self[index]
            except UserError as err:
                if not skip:
                    raise
                problems.append(str(err))
                continue
            primary = sample.anomaly if sample.anomaly is not None else sample.semantic
            if primary is not None:
                values, counts = np.unique(primary, return_counts=True)
                hist.update({int(v): int(c) for v, c in zip(values, counts, strict=True)})
        return CheckReport(len(self), dict(hist), tuple(problems))
