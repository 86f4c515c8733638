"""The one inference loop: read an image, run the model once, score every method, hand the result
to every consumer.

Every command and pipeline that runs a model over images is :func:`run` with a source, a predictor,
methods and consumers: metrics, threshold calibration, query selection, validation during training,
and the writers of maps, overlays, label PNGs and panoptic files. A task (``anomaly``, ``oss``,
``ops``) is a set of consumers, so several tasks share one pass over the images.

Around the model, two threads keep the processor busy: one decodes the next images
(:func:`~mask2anomaly.inference.sources.prefetch`), one writes the files the consumers hand to
:meth:`RunSetup.write` (PNG encoding and ``.npy`` writing release the interpreter lock). Under
``torchrun`` the images are split over the processes by index and the consumers' states are merged
on the main process, which alone returns results.
"""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from mask2anomaly import distributed
from mask2anomaly.data.classes import LabelSpace
from mask2anomaly.errors import UserError
from mask2anomaly.inference.outputs import ImageOutputs
from mask2anomaly.inference.predictor import Predictor
from mask2anomaly.inference.sources import Source, prefetch
from mask2anomaly.methods import AnomalyMethod

MAX_PENDING_WRITES = 16


class Writer:
    """Writes files on a thread of its own, at most :data:`MAX_PENDING_WRITES` behind; an error of
    a write is raised at the next :meth:`submit` or at :meth:`close`."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="write")
        self._pending: list[Future[Any]] = []

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        """Run ``write(*args)`` in the background."""
        for future in [f for f in self._pending if f.done()]:
            future.result()
        self._pending = [f for f in self._pending if not f.done()]
        while len(self._pending) >= MAX_PENDING_WRITES:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(write, *args))

    def close(self) -> None:
        """Wait for every write; raise the first error."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown(wait=True)
            self._pending = []


@dataclass
class RunSetup:
    """What a consumer is told once, before the first image.

    Attributes:
        methods: the methods scoring every image.
        predictor: the model.
        labels: the label space of the source's dataset (class names, things; the model's classes
            for plain images).
        writer: background writer for output files.
    """

    methods: tuple[AnomalyMethod, ...]
    predictor: Predictor
    labels: LabelSpace
    writer: Writer

    @property
    def method_names(self) -> list[str]:
        return [m.name for m in self.methods]

    def require_model_classes(self, task: str) -> None:
        """Refuse a task that compares the model's classes with the dataset's when their numbers differ."""
        if self.labels.num_classes != self.predictor.num_classes:
            raise UserError(
                f"{task}: the model predicts {self.predictor.num_classes} classes but the dataset has "
                f"{self.labels.num_classes} known classes ({', '.join(self.labels.names[:4])}, ...)"
            )

    def write(self, write: Callable[..., Any], *args: Any) -> None:
        """Write a file in the background (see :class:`Writer`)."""
        self.writer.submit(write, *args)


class Consumer(ABC):
    """Something the loop feeds with every image's outputs.

    Subclasses implement :meth:`update` and :meth:`result`; state that must be combined across
    ``torchrun`` processes is merged by :meth:`merge`.
    """

    needs_closed_set: bool = False
    """Whether :meth:`update` reads the closed-set prediction."""

    setup: RunSetup

    def start(self, setup: RunSetup) -> None:
        """Called once before the first image."""
        self.setup = setup

    @abstractmethod
    def update(self, outputs: ImageOutputs) -> None:
        """Consume one image's outputs."""

    def merge(self, other: Consumer) -> None:
        """Add the images ``other`` (the same consumer on another process) saw."""
        raise UserError(f"{type(self).__name__} cannot be split over several processes")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("setup", None)
        return state


@dataclass
class LoopResult:
    """What a run over a source did.

    Attributes:
        num_images: images scored.
        skipped: one line per image that could not be read (skipped unless ``strict``).
        seconds: wall time of the loop.
    """

    num_images: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else float("nan")


def run(
    source: Source,
    predictor: Predictor,
    methods: Sequence[AnomalyMethod],
    consumers: Sequence[Consumer],
    *,
    labels: LabelSpace | None = None,
    strict: bool = False,
    process: distributed.Process | None = None,
    progress: str | None = None,
) -> LoopResult:
    """Score every image of ``source`` with every method once and feed every consumer.

    Args:
        source: the images.
        predictor: the model.
        methods: the methods (checked against the model first).
        consumers: what consumes the outputs; on the main process they hold the merged results.
        labels: the label space handed to the consumers (default: the source dataset's, else the
            model's classes).
        strict: an image that cannot be read is an error (default: skipped and listed).
        process: this process under ``torchrun`` (default: a single process).
        progress: progress-bar label (``None``: the source's description).

    Returns:
        The images scored and skipped (over every process).
    """
    methods = tuple(methods)
    predictor.check_methods(methods)
    process = process or distributed.Process(0, 1, predictor.device)
    if labels is None:
        labels = getattr(getattr(source, "reader", None), "label_space", None) or LabelSpace.of_model(predictor)
    writer = Writer()
    setup = RunSetup(methods, predictor, labels, writer)
    for consumer in consumers:
        consumer.start(setup)
    flip = any(m.needs_flip for m in methods)
    closed_set = any(c.needs_closed_set for c in consumers)
    result = LoopResult()
    indices = list(range(process.rank, len(source), process.world_size))
    started = time.perf_counter()
    bar = tqdm(total=len(indices), desc=progress or source.description, unit="img", disable=not process.is_main)
    try:
        for _, item in prefetch(source, indices):
            bar.update(1)
            if isinstance(item, UserError):
                if strict:
                    raise item
                warnings.warn(f"skipped: {item}", stacklevel=2)
                result.skipped.append(str(item))
                continue
            frame = predictor.context(item.image, flip)
            outputs = ImageOutputs(item, frame, methods, closed_set)
            for consumer in consumers:
                consumer.update(outputs)
            result.num_images += 1
    finally:
        bar.close()
        writer.close()
    result.seconds = time.perf_counter() - started
    if process.distributed:
        _merge_processes(consumers, result, process)
    return result


def _merge_processes(consumers: Sequence[Consumer], result: LoopResult, process: distributed.Process) -> None:
    parts = distributed.gather((list(consumers), result.num_images, result.skipped), process)
    if process.is_main:
        for others, num_images, skipped in parts[1:]:
            for mine, other in zip(consumers, others, strict=True):
                mine.merge(other)
            result.num_images += num_images
            result.skipped.extend(skipped)
        result.skipped.sort()
