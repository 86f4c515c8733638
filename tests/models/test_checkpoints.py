"""Native checkpoints, conversion, and clear errors for checkpoints that do not fit."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from mask2anomaly import load_model, save_model
from mask2anomaly.cli.main import main
from mask2anomaly.errors import CheckpointError
from mask2anomaly.models import MaskTransformer
from tests.models.test_detectron2_layout import official_state_dict
from tests.models.tiny import tiny_config


@pytest.fixture(scope="module")
def model() -> MaskTransformer:
    torch.manual_seed(0)
    return MaskTransformer(tiny_config("global_masked")).eval()


@pytest.mark.parametrize("target", ["model.safetensors", "model_dir"])
def test_native_round_trip(model, tmp_path, target):
    save_model(model, tmp_path / target)
    loaded = load_model(tmp_path / target)
    assert loaded.config == model.config
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).mask_logits, model(x).mask_logits, atol=0, rtol=0)
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_convert_cli_from_detectron2(model, tmp_path, capsys):
    torch.manual_seed(1)
    d2 = MaskTransformer(tiny_config("global_masked", backbone="resnet50", num_heads=8)).eval()
    torch.save({"model": official_state_dict(d2)}, tmp_path / "m.pth")
    assert main(["convert", str(tmp_path / "m.pth"), str(tmp_path / "m.safetensors")]) == 0
    assert "global_masked" in capsys.readouterr().out
    converted = load_model(tmp_path / "m.safetensors")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x).class_logits, d2(x).class_logits, atol=0, rtol=0)
    assert main(["info", str(tmp_path / "m.safetensors")]) == 0
    assert "resnet50" in capsys.readouterr().out


def _save_state(state, path):
    torch.save({"model": state}, path)
    return path


def _d2_state():
    torch.manual_seed(2)
    return official_state_dict(MaskTransformer(tiny_config("masked", backbone="resnet50", num_heads=8)))


def test_missing_key_is_named(tmp_path):
    state = _d2_state()
    del state["sem_seg_head.predictor.decoder_norm.weight"]
    with pytest.raises(CheckpointError, match=r"m\.pth: checkpoint lacks 1 weights.*decoder\.norm\.weight"):
        load_model(_save_state(state, tmp_path / "m.pth"))


def test_unexpected_key_is_named(tmp_path):
    state = _d2_state()
    state["sem_seg_head.predictor.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"has 1 weights the model does not: sem_seg_head\.predictor\.extra_head"):
        load_model(_save_state(state, tmp_path / "m.pth"))


def test_misshaped_key_is_named(model, tmp_path):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["decoder.class_embed.bias"] = torch.zeros(99)
    save_file(state, tmp_path / "x.safetensors", metadata={"mask2anomaly.config": _config_json(model)})
    with pytest.raises(CheckpointError, match=r"wrong shape: decoder\.class_embed\.bias \(99,\) vs model \(6,\)"):
        load_model(tmp_path / "x.safetensors")


def _config_json(model):
    import json

    from mask2anomaly.config_utils import to_dict

    return json.dumps(to_dict(model.config))


class NotAWeight:
    pass


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": NotAWeight()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to unpickle \(only weights_only=True"):
        load_model(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("weights.h5", b"\x89HDF", r"unknown checkpoint type '\.h5'"),
        ("broken.pth", b"not a zip", r"broken\.pth: not a readable PyTorch checkpoint"),
        ("broken.safetensors", b"\xff" * 12, r"broken\.safetensors: not a safetensors file"),
        ("bare.safetensors", b"\x02\x00\x00\x00\x00\x00\x00\x00{}", r"bare\.safetensors: safetensors file without"),
    ],
)
def test_unknown_or_damaged_files(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / name)


def test_not_a_mask2former_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match=r"not a Mask2Former detectron2 checkpoint"):
        load_model(_save_state({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth"))


def test_missing_path_and_bare_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match=r"directory without config\.json"):
        load_model(tmp_path)


def test_cli_prints_one_line_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mask2anomaly",
            "convert",
            str(tmp_path / "missing.pth"),
            str(tmp_path / "o.safetensors"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.pth: no such file" in lines[0]
    assert not (tmp_path / "o.safetensors").exists()


def test_help_lists_commands():
    result = subprocess.run([sys.executable, "-m", "mask2anomaly", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "convert" in result.stdout and "info" in result.stdout


def test_atomic_writes_get_ordinary_permissions_and_leave_nothing_on_failure(tmp_path):
    import os

    from mask2anomaly.io_utils import atomic_path, write_text_atomic

    write_text_atomic(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert (tmp_path / "a.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_half_precision_file_loads_as_the_rounded_float32_model(model, tmp_path):
    save_model(model, tmp_path / "full.safetensors")
    assert (
        main(["convert", str(tmp_path / "full.safetensors"), str(tmp_path / "half.safetensors"), "--dtype", "float16"])
        == 0
    )
    full, half = (tmp_path / "full.safetensors").stat().st_size, (tmp_path / "half.safetensors").stat().st_size
    assert half < 0.55 * full
    loaded = load_model(tmp_path / "half.safetensors")
    for key, value in model.state_dict().items():
        got = loaded.state_dict()[key]
        assert got.dtype == value.dtype
        expected = value.half().to(value.dtype) if value.is_floating_point() else value
        assert torch.equal(got, expected), key
