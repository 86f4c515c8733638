"""What the inference loop reads: the images of a dataset (with their labels) or of files.

Each image gets a unique, file-safe output *stem*: its name with every character outside
``[A-Za-z0-9_.-]`` replaced by ``_``; names that still collide (``x.png`` and ``x.jpg``, ``a b.png``
and ``a_b.png``) get their extension appended, then a counter, so no two inputs ever write the same
output file. Images are decoded by a thread of their own, a few ahead of the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mask2anomaly import data as datasets
from mask2anomaly.data.base import IMAGE_EXTENSIONS, Reader, Sample, read_image
from mask2anomaly.errors import UserError


@dataclass(frozen=True)
class InputItem:
    """One image for the loop.

    Attributes:
        index: position in its source.
        name: the image's name in its dataset, or its file name.
        stem: unique, file-safe name for output files.
        image: ``(H, W, 3)`` uint8 RGB.
        sample: the dataset sample with its labels, or ``None`` for a plain image file.
    """

    index: int
    name: str
    stem: str
    image: np.ndarray
    sample: Sample | None = None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "_"


def unique_stems(names: Sequence[str], suffixes: Sequence[str] | None = None) -> list[str]:
    """File-safe stems of ``names``, all different (see the module docstring).

    Args:
        names: the inputs' names without extension.
        suffixes: their extensions (``".png"``), appended to colliding stems; ``None`` for none.
    """
    stems = [_safe(name) for name in names]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    if suffixes is not None:
        stems = [
            f"{stem}_{suffix.lstrip('.').lower()}" if counts[stem] > 1 and suffix else stem
            for stem, suffix in zip(stems, suffixes, strict=True)
        ]
    taken: set[str] = set()
    out = []
    for stem in stems:
        candidate, n = stem, 2
        while candidate in taken:
            candidate, n = f"{stem}-{n}", n + 1
        taken.add(candidate)
        out.append(candidate)
    return out


class Source:
    """A sequence of images; :meth:`load` decodes one (raising :class:`UserError` if it cannot).

    Attributes:
        description: what the images are, for progress bars and messages.
        names: the images' names.
        stems: their unique output stems.
    """

    description: str
    names: list[str]
    stems: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> InputItem:
        raise NotImplementedError


class DatasetSource(Source):
    """The first ``max_images`` images (0: all) of a dataset, with their labels.

    Args:
        dataset: a reader, or a ``NAME:PATH[?options]`` spec.
        max_images: how many images (0: all).
    """

    def __init__(self, dataset: Reader | str, max_images: int = 0) -> None:
        if max_images < 0:
            raise UserError(f"--max-images {max_images}: expected 0 (all) or a positive number")
        self.reader = datasets.open_spec(dataset) if isinstance(dataset, str) else dataset
        self.description = dataset if isinstance(dataset, str) else type(dataset).__name__
        count = len(self.reader) if max_images == 0 else min(max_images, len(self.reader))
        self.names = self.reader.names[:count]
        self.stems = unique_stems(self.names)

    def load(self, index: int) -> InputItem:
        sample = self.reader[index]
        return InputItem(index, sample.name, self.stems[index], sample.image, sample)


class FileSource(Source):
    """Image files: one file, or every image of a folder (sorted by name).

    Args:
        source: the file or folder.
    """

    def __init__(self, source: str | Path) -> None:
        path = Path(source)
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not files:
                raise UserError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        else:
            raise UserError(f"{path}: no such file or folder")
        self.files = files
        self.description = str(path)
        self.names = [p.name for p in files]
        self.stems = unique_stems([p.stem for p in files], [p.suffix for p in files])

    def load(self, index: int) -> InputItem:
        path = self.files[index]
        return InputItem(index, path.name, self.stems[index], read_image(path))


def prefetch(source: Source, indices: Sequence[int], depth: int = 2) -> Iterator[tuple[int, InputItem | UserError]]:
    """``(index, item)`` for every index, in order, decoded by one background thread up to
    ``depth`` images ahead; an image that cannot be read comes as its :class:`UserError`."""

    def load(index: int) -> InputItem | UserError:
        try:
            return source.load(index)
        except UserError as err:
            return err

    with ThreadPoolExecutor(1, thread_name_prefix="read") as pool:
        pending: list[tuple[int, Future[InputItem | UserError]]] = []
        position = 0
        while position < len(indices) or pending:
            while position < len(indices) and len(pending) < depth:
                pending.append((indices[position], pool.submit(load, indices[position])))
                position += 1
            index, future = pending.pop(0)
            yield index, future.result()
