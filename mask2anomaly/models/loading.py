"""``load_model``: one entry point for every checkpoint format users have.

``source`` may be

* a Hugging Face Mask2Former directory (``config.json`` with ``model_type: mask2former`` and
  ``model.safetensors`` or ``pytorch_model.bin``);
* a detectron2 checkpoint of Mask2Former or Mask2Anomaly (``.pth`` / ``.pkl``: a dict with
  ``model``, or the bare state dict; read with ``weights_only=True`` — pickles that need arbitrary
  code are refused);
* this package's checkpoint: a ``.safetensors`` file with the config in its metadata, or a directory
  with ``model.safetensors`` and our ``config.json``.

Every weight must find its place and every parameter must get a value; anything else is a
:class:`~mask2anomaly.errors.CheckpointError` naming the file and the first offending keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mask2anomaly.config_utils import from_dict, to_dict
from mask2anomaly.errors import CheckpointError
from mask2anomaly.io_utils import write_text_atomic
from mask2anomaly.models.config import ModelConfig
from mask2anomaly.models.formats.detectron2 import config_from_detectron2, convert_detectron2_state_dict
from mask2anomaly.models.formats.huggingface import config_from_hf, convert_hf_state_dict
from mask2anomaly.models.formats.native import load_safetensors, read_native_config, save_native
from mask2anomaly.models.formats.state_dict import as_tensors, load_strict, read_torch_file
from mask2anomaly.models.mask_transformer import MaskTransformer


def _build(
    config: ModelConfig, state: dict[str, torch.Tensor], source: str, device: str | torch.device
) -> MaskTransformer:
    model = MaskTransformer(config, load_pretrained=False)
    load_strict(model, state, source)
    return model.to(device).eval()


def _load_hf_dir(path: Path, device: str | torch.device) -> MaskTransformer:
    hf = json.loads((path / "config.json").read_text())
    config = config_from_hf(hf, str(path))
    if (path / "model.safetensors").exists():
        state = load_safetensors(path / "model.safetensors")
    elif (path / "pytorch_model.bin").exists():
        state = as_tensors(read_torch_file(path / "pytorch_model.bin"), path / "pytorch_model.bin")
    else:
        raise CheckpointError(f"{path}: Hugging Face directory without model.safetensors or pytorch_model.bin")
    return _build(config, convert_hf_state_dict(state, config), str(path), device)


def _load_detectron2(path: Path, device: str | torch.device, overrides: dict[str, Any] | None) -> MaskTransformer:
    obj = read_torch_file(path)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights (or a dict with 'model'), got {type(obj).__name__}")
    state = as_tensors(obj, path)
    config = config_from_detectron2(state, str(path), overrides)
    return _build(config, convert_detectron2_state_dict(state, config), str(path), device)


def _load_native_file(path: Path, device: str | torch.device, config: ModelConfig | None) -> MaskTransformer:
    config = config or read_native_config(path)
    if config is None:
        raise CheckpointError(
            f"{path}: safetensors file without a mask2anomaly config in its metadata "
            "(an ESPNetv2 network is loaded as espnetv2:PATH)"
        )
    state = {k: v for k, v in load_safetensors(path).items() if not k.startswith(("optimizer.", "flow."))}
    return _build(config, state, str(path), device)


def load_model(
    source: str | Path, device: str | torch.device = "cpu", overrides: dict[str, Any] | None = None
) -> MaskTransformer:
    """Load a mask transformer from any supported checkpoint, in eval mode on ``device``.

    Args:
        source: path of a checkpoint file or directory (see the module docstring).
        device: where to put the model.
        overrides: for detectron2 files, :class:`ModelConfig` fields that shapes cannot tell
            (e.g. ``{"attention": "cross", "num_heads": 8}``).
    """
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.exists():
            raise CheckpointError(f"{path}: directory without config.json; not a model checkpoint")
        try:
            meta = json.loads(config_file.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{config_file}: invalid JSON ({err})") from None
        if meta.get("model_type") == "mask2former":
            return _load_hf_dir(path, device)
        if "mask2anomaly" in meta:
            config = from_dict(ModelConfig, meta["mask2anomaly"], where=str(config_file))
            return _load_native_file(path / "model.safetensors", device, config)
        raise CheckpointError(f"{config_file}: neither a Hugging Face Mask2Former nor a mask2anomaly config")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _load_native_file(path, device, None)
    if suffix in (".pth", ".pkl", ".pt", ".bin"):
        return _load_detectron2(path, device, overrides)
    raise CheckpointError(
        f"{path}: unknown checkpoint type {suffix or '(no extension)'!r}; expected a .safetensors, .pth or "
        ".pkl file, or a Hugging Face directory"
    )


def save_model(model: MaskTransformer, path: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write ``model`` in this package's format: ``path`` ending in ``.safetensors`` gives one file
    with the config in its metadata; any other ``path`` is a directory with ``model.safetensors`` and
    ``config.json``. ``dtype`` stores the floating-point weights in that type (``torch.float16``)."""
    target = Path(path)
    if target.suffix.lower() == ".safetensors":
        save_native(model.state_dict(), model.config, target, dtype)
        return
    target.mkdir(parents=True, exist_ok=True)
    save_native(model.state_dict(), model.config, target / "model.safetensors", dtype)
    write_text_atomic(target / "config.json", json.dumps({"mask2anomaly": to_dict(model.config)}, indent=2))
