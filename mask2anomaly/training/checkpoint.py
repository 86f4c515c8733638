"""Training checkpoints: one safetensors file holding the model, the optimiser state and, in its
metadata, the run configuration and the step — written atomically, so a crash leaves either the
previous checkpoint or the new one, never a mixture.

The model weights keep their names and the model configuration sits under the usual metadata key,
so :func:`mask2anomaly.load_model` (``espnetv2:PATH`` for an ESPNetv2 run) reads a training
checkpoint directly (it skips the optimiser tensors, stored under ``optimizer.``, and the weights of
DenseHybrid's flow, under ``flow.``). Randomness needs no saved state: every random draw of a run
derives from its seed and the global sample number (:mod:`mask2anomaly.training.data`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mask2anomaly import __version__
from mask2anomaly.config_utils import from_dict, to_dict
from mask2anomaly.errors import CheckpointError
from mask2anomaly.io_utils import atomic_path
from mask2anomaly.models.espnetv2 import ESPNETV2_CONFIG_KEY
from mask2anomaly.models.formats.native import CONFIG_KEY
from mask2anomaly.training.config import RunConfig

TRAINING_KEY = "mask2anomaly.training"
OPTIMIZER_PREFIX = "optimizer."


@dataclass
class TrainingState:
    """What a resumed run needs besides the code: weights, optimiser state, step, configuration."""

    step: int
    config: RunConfig
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


def save_training_state(path: Path, state: TrainingState, extra: dict[str, Any] | None = None) -> None:
    """Write ``state`` to ``path`` atomically (``extra``: JSON-able facts such as the last losses)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.model.items()}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state.optimizer["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIMIZER_PREFIX}{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [
        {k: v for k, v in group.items() if k != "params"} | {"params": group["params"]}
        for group in state.optimizer["param_groups"]
    ]
    training = {
        "step": state.step,
        "run": to_dict(state.config),
        "optimizer_groups": groups,
        "optimizer_scalars": scalars,
        "extra": extra or {},
    }
    metadata = {TRAINING_KEY: json.dumps(training), "mask2anomaly.version": __version__}
    if state.config.espnetv2 is not None:
        metadata[ESPNETV2_CONFIG_KEY] = json.dumps(to_dict(state.config.espnetv2))
    else:
        metadata[CONFIG_KEY] = json.dumps(to_dict(state.config.model))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_training_state(path: Path) -> TrainingState:
    """Read a checkpoint written by :func:`save_training_state`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises several error types for damaged files
        raise CheckpointError(f"{path}: unreadable checkpoint ({err})") from None
    if TRAINING_KEY not in metadata:
        raise CheckpointError(f"{path}: not a training checkpoint (no optimiser state)")
    training = json.loads(metadata[TRAINING_KEY])
    optimizer_state: dict[int, dict[str, Any]] = {}
    model: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIMIZER_PREFIX):
            index, name = key[len(OPTIMIZER_PREFIX) :].split(".", 1)
            optimizer_state.setdefault(int(index), {})[name] = value
        else:
            model[key] = value
    for index, entry in training["optimizer_scalars"].items():
        optimizer_state.setdefault(int(index), {}).update(entry)
    groups = training["optimizer_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return TrainingState(
        step=int(training["step"]),
        config=from_dict(RunConfig, training["run"], where=str(path)),
        model=model,
        optimizer={"state": optimizer_state, "param_groups": groups},
    )
