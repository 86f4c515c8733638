"""Loading a state dict so that every mismatch is reported, never ignored.

A checkpoint whose weights do not all find a place, or that leaves a parameter of the model
without a value, would silently give a half-random model — the commonest failure reported against
the reference repositories. :func:`load_strict` refuses it with one line naming the first
offending keys.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mask2anomaly.errors import CheckpointError
from mask2anomaly.models.config import ModelConfig


def _first(keys: Iterable[str], n: int = 3) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``module``; raise :class:`CheckpointError` on any missing, unexpected or
    mis-shaped key, naming ``source`` and the first offending keys."""
    expected = module.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing:
        raise CheckpointError(f"{source}: checkpoint lacks {len(missing)} weights of the model: {_first(missing)}")
    if unexpected:
        raise CheckpointError(
            f"{source}: checkpoint has {len(unexpected)} weights the model does not: {_first(unexpected)}"
        )
    misshaped = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if misshaped:
        raise CheckpointError(f"{source}: {len(misshaped)} weights have the wrong shape: {'; '.join(misshaped[:3])}")
    mistyped = [
        f"{k} {state[k].dtype} vs model {v.dtype}"
        for k, v in expected.items()
        if v.is_floating_point() != state[k].is_floating_point()
    ]
    if mistyped:
        raise CheckpointError(
            f"{source}: {len(mistyped)} weights have the wrong kind of values: {'; '.join(mistyped[:3])}"
        )
    module.load_state_dict(dict(state), strict=True)


def read_torch_file(path: Path) -> Any:
    """Read a ``torch.save`` file with ``weights_only=True``; refuse anything else in one line."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (not a torch.save archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f"it needs {found.group(1)}" if found else "it contains objects other than tensors"
        raise CheckpointError(
            f"{path}: refused to unpickle (only weights_only=True pickles are loaded): {what}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None


def as_tensors(state: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """Check that every value is a tensor (numpy arrays are converted)."""
    out = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        out[key] = value
    return out


def rename(state: Mapping[str, torch.Tensor], rules: Iterable[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Rename keys with the first matching ``(pattern, replacement)`` regex rule (full match).

    A rule whose replacement is ``""`` drops the key. Keys matching no rule are kept as they are, so
    that :func:`load_strict` reports them as unexpected.
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, repl in compiled:
            match = pattern.fullmatch(key)
            if match:
                if repl:
                    out[match.expand(repl)] = value
                break
        else:
            out[key] = value
    return out


def fpn_levels(config: ModelConfig) -> int:
    """Number of FPN steps from stride 8 down to the mask features' stride (1 for stride 4)."""
    return int(math.log2(8) - math.log2(config.common_stride))
