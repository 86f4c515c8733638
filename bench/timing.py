"""Timing shared by the benchmarks: medians after a warm-up, several functions taking turns."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each function over ``repeats`` runs after one warm-up each; the functions
    take turns so that a change of machine load hits all of them alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up."""
    return interleaved_medians([fn], repeats)[0]
