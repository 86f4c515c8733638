"""Anomaly scoring methods, open-set semantic and open-set panoptic inference.

Every method turns one forward pass (held by a :class:`ScoreContext`) into an anomaly score map
``[B, H, W]`` at image resolution, higher = more anomalous. Methods are named by their registry key
plus options after ``+``: ``"mask2anomaly"`` is paper 000's Eq. 5, ``"mask2anomaly+refine+tta"``
adds the refinement mask and flip averaging. :data:`METHODS` is the registry; adding a method means
one module and one line here.

Example:
    >>> method = parse_method("mask2anomaly+refine+tta")
    >>> method.name, method.needs_flip
    ('mask2anomaly+refine+tta', True)
"""

from __future__ import annotations

from typing import Any

from mask2anomaly.errors import UserError
from mask2anomaly.methods.base import AnomalyMethod, ScoreContext, score_methods
from mask2anomaly.methods.baselines import MSP, Energy, Entropy, MaxLogit
from mask2anomaly.methods.densehybrid import DenseHybrid
from mask2anomaly.methods.mask2anomaly import Mask2Anomaly, refinement_classes, refinement_mask
from mask2anomaly.methods.maskomaly import Maskomaly, QueryOverlap, QuerySelection
from mask2anomaly.methods.rba import RbA

METHODS: dict[str, type[AnomalyMethod]] = {
    "mask2anomaly": Mask2Anomaly,
    "msp": MSP,
    "entropy": Entropy,
    "max_logit": MaxLogit,
    "energy": Energy,
    "maskomaly": Maskomaly,
    "rba": RbA,
    "densehybrid": DenseHybrid,
}
"""Registry: method key -> class. Options per method are in each class's ``flags``."""


def method_names() -> list[str]:
    """Every valid method name: each key alone and with each of its options."""
    return [name for key, cls in METHODS.items() for name in (key, *(f"{key}+{flag}" for flag in cls.flags))]


def parse_method(spec: str, **params: Any) -> AnomalyMethod:
    """Build the method named ``spec`` (``key[+option...]``), with extra field values ``params``.

    Args:
        spec: e.g. ``"msp"``, ``"mask2anomaly+refine+tta"``, ``"maskomaly+poster"``.
        params: hyper-parameters of the method's dataclass (``anomaly_queries=(3, 7)``).

    Raises:
        UserError: unknown method, option or parameter; the message lists the valid ones.
    """
    key, *flags = spec.strip().split("+")
    if key not in METHODS:
        raise UserError(f"unknown method {key!r}; valid methods: {', '.join(method_names())}")
    return METHODS[key].build(flags, **params)


__all__ = [
    "METHODS",
    "MSP",
    "AnomalyMethod",
    "DenseHybrid",
    "Energy",
    "Entropy",
    "Mask2Anomaly",
    "Maskomaly",
    "MaxLogit",
    "QueryOverlap",
    "QuerySelection",
    "RbA",
    "ScoreContext",
    "method_names",
    "parse_method",
    "refinement_classes",
    "refinement_mask",
    "score_methods",
]
