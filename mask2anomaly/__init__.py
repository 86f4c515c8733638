"""mask2anomaly: anomaly segmentation, open-set semantic and open-set panoptic segmentation of road
scenes with mask transformers (Mask2Anomaly and its peers), with benchmark-exact metrics.

The names below are loaded on first use, so that the metrics (``mask2anomaly.metrics``) and the
``evaluate-maps`` command run without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "mask2anomaly.models.loading",
    "save_model": "mask2anomaly.models.loading",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mask2anomaly' has no attribute {name!r}")
