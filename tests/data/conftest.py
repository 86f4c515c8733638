"""Fixtures for the dataset tests: the shared real data (skipped when absent) and a tiny synthetic set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mask2anomaly.data.synthetic import write_benchmark

_DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED = Path(os.environ.get("MASK2ANOMALY_SHARED_DATA", _DEFAULT))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared real-data folder (``../shared/data`` next to the repository)."""
    if not (SHARED / "validation").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set MASK2ANOMALY_SHARED_DATA)")
    return SHARED


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic benchmark written once per session (64x128 px)."""
    out = tmp_path_factory.mktemp("synthetic") / "bench"
    write_benchmark(out, train=3, val=2, test=6, outliers=4, size=(64, 128), seed=7)
    return out
