"""This package's own checkpoint: one ``.safetensors`` file whose metadata holds the model
configuration as JSON (key ``mask2anomaly.config``), so weights and architecture never part.
A directory with ``model.safetensors`` and our ``config.json`` is read as well. Training checkpoints
use the same file and add the optimiser state under ``optimizer.``, which model loading skips."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mask2anomaly import __version__
from mask2anomaly.config_utils import from_dict, to_dict
from mask2anomaly.errors import CheckpointError
from mask2anomaly.io_utils import atomic_path
from mask2anomaly.models.config import ModelConfig

CONFIG_KEY = "mask2anomaly.config"


def save_native(
    state: dict[str, torch.Tensor], config: ModelConfig, path: str | Path, dtype: torch.dtype | None = None
) -> None:
    """Write ``state`` and ``config`` to ``path`` (a ``.safetensors`` file) atomically.

    ``dtype`` (e.g. ``torch.float16``, to halve the file) casts the floating-point tensors; loading
    casts them back to the model's dtype.
    """
    metadata = {CONFIG_KEY: json.dumps(to_dict(config)), "mask2anomaly.version": __version__}
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in state.items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_native_config(path: Path) -> ModelConfig | None:
    """The configuration stored in a safetensors file, or ``None`` if it has none."""
    try:
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or header_len > 100_000_000:
                raise CheckpointError(f"{path}: not a safetensors file (bad header length)")
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable safetensors header ({err})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    text = metadata.get(CONFIG_KEY) if isinstance(metadata, dict) else None
    if text is None:
        return None
    try:
        config = json.loads(text)
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: the model configuration in the metadata is not JSON") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the model configuration in the metadata is not a JSON object")
    return from_dict(ModelConfig, config, where=str(path))


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file, with a one-line error for a damaged file."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read safetensors ({err})") from None
