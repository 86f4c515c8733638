"""What the benchmarks share: the common options, and medians after a warm-up with several
functions taking turns."""

from __future__ import annotations

import argparse
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


def parser(doc: str | None, height: int = 512, width: int = 1024) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes (input size, repeats, threads)."""
    out = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    out.add_argument("--height", type=int, default=height)
    out.add_argument("--width", type=int, default=width)
    out.add_argument("--repeats", type=int, default=3)
    out.add_argument("--threads", type=int, default=2)
    return out
