"""Shared test settings: deterministic, single-threaded-friendly torch, and where the real data is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

SHARED_DATA = Path(
    os.environ.get("MASK2ANOMALY_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture
def shared_data() -> Path:
    """The real data folder; tests that need it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found ({SHARED_DATA}); set MASK2ANOMALY_SHARED_DATA")
    return SHARED_DATA
