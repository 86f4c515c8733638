"""Bad and odd input across every command: one line naming the file or option and the problem, a
non-zero exit, no traceback, and no half-written file left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from mask2anomaly.cli.main import main
from mask2anomaly.config_utils import to_dict
from mask2anomaly.data.synthetic import generate_scene
from mask2anomaly.models import MaskTransformer
from mask2anomaly.models.formats.native import CONFIG_KEY
from mask2anomaly.models.loading import save_model
from tests.models.tiny import tiny_config

READ_ONLY = "/proc/mask2anomaly-test"
"""A place no process may create files in, whoever runs the tests (root ignores chmod)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    model = MaskTransformer(tiny_config("masked", num_classes=19))
    save_model(model, root / "tiny.safetensors")
    broken = MaskTransformer(tiny_config("masked", num_classes=19))
    with torch.no_grad():
        broken.decoder.class_embed.bias.fill_(float("nan"))
    save_model(broken, root / "nan.safetensors")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, root / "listmeta.safetensors", metadata={CONFIG_KEY: "[1, 2]"})
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 2)
    ints = {**state, key: state[key].to(torch.int32)}
    save_file(ints, root / "ints.safetensors", metadata={CONFIG_KEY: json.dumps(to_dict(model.config))})
    images = root / "images"
    images.mkdir()
    Image.fromarray(generate_scene("test", 0, size=(64, 128)).image).save(images / "0.png")
    (root / "broken.png").write_bytes(b"not an image")
    validation = root / "validation"
    for i in range(2):
        scene = generate_scene("test", i, size=(64, 128))
        (validation / "images").mkdir(parents=True, exist_ok=True)
        (validation / "labels_masks").mkdir(exist_ok=True)
        Image.fromarray(scene.image).save(validation / "images" / f"{i}.png")
        Image.fromarray(scene.anomaly).save(validation / "labels_masks" / f"{i}.png")
    (root / "a_file").write_text("not a folder")
    (root / "list.json").write_text("[1, 2]")
    (root / "dir.safetensors").mkdir()
    (root / "dir.json").mkdir()
    busy = root / "busy"
    busy.mkdir()
    (busy / ".lock").write_text(str(os.getppid()))
    return {
        "model": str(root / "tiny.safetensors"),
        "nan_model": str(root / "nan.safetensors"),
        "listmeta": str(root / "listmeta.safetensors"),
        "listmeta_json": str(root / "list.json"),
        "ints": str(root / "ints.safetensors"),
        "images": str(images),
        "broken": str(root / "broken.png"),
        "dataset": f"validation:{validation}",
        "file": str(root / "a_file"),
        "under_file": str(root / "a_file" / "out"),
        "dir_safetensors": str(root / "dir.safetensors"),
        "dir_json": str(root / "dir.json"),
        "busy": str(busy),
        "root": str(root),
    }


def predict(w, out="{tmp}/out", *extra):
    return ["predict", "--model", w["model"], "--input", w["images"], "--out", out, "--device", "cpu", *extra]


def evaluate(w, out="{tmp}/out", *extra):
    return [
        "evaluate",
        "--model",
        w["model"],
        "--dataset",
        w["dataset"],
        "--methods",
        "msp",
        "--out",
        out,
        "--device",
        "cpu",
        *extra,
    ]


def train(w, *extra):
    return ["train", "--recipe", "synthetic_cpu", "--out", "{tmp}/run", *extra]


CASES = {
    # outputs that cannot be written
    "predict out is a file": (lambda w: predict(w, w["file"]), "is a file, expected a folder"),
    "predict out under a file": (lambda w: predict(w, w["under_file"]), "cannot write there"),
    "predict out read-only": (lambda w: predict(w, READ_ONLY), "cannot write there"),
    "evaluate out is a file": (lambda w: evaluate(w, w["file"]), "is a file, expected a folder"),
    "evaluate out read-only": (lambda w: evaluate(w, READ_ONLY), "cannot write there"),
    "evaluate into a folder in use": (lambda w: evaluate(w, w["busy"]), "another run (process"),
    "convert dst is a folder": (lambda w: ["convert", w["model"], w["dir_safetensors"]], "is a folder"),
    "convert dst read-only": (lambda w: ["convert", w["model"], f"{READ_ONLY}/m.safetensors"], "cannot write there"),
    "make-synthetic out is a file": (lambda w: ["make-synthetic", w["file"]], "is a file"),
    "make-synthetic out read-only": (lambda w: ["make-synthetic", READ_ONLY, "--train", "1"], "cannot write there"),
    "train out is a file": (lambda w: ["train", "--recipe", "synthetic_cpu", "--out", w["file"]], "is a file"),
    "train out read-only": (lambda w: ["train", "--recipe", "synthetic_cpu", "--out", READ_ONLY], "cannot write"),
    "select-queries json is a folder": (
        lambda w: ["select-queries", "--model", w["model"], "--dataset", w["dataset"], "--json", w["dir_json"]],
        "is a folder",
    ),
    "data check json is a folder": (
        lambda w: ["data", "check", "--dataset", w["dataset"], "--json", w["dir_json"]],
        "is a folder",
    ),
    "evaluate-panoptic json is a folder": (
        lambda w: [
            "evaluate-panoptic",
            "--gt-json",
            "g.json",
            "--gt-dir",
            "g",
            "--pred-json",
            "p.json",
            "--pred-dir",
            "p",
            "--json",
            w["dir_json"],
        ],
        "is a folder",
    ),
    "demo out is a file": (lambda w: ["demo", "--out", w["file"], "--model", w["model"]], "is a file"),
    # devices and sizes
    "predict cuda without cuda": (lambda w: [*predict(w)[:-2], "--device", "cuda"], "CUDA is not available"),
    "predict unknown device": (lambda w: [*predict(w)[:-2], "--device", "gpu"], "unknown device"),
    "evaluate cuda without cuda": (lambda w: [*evaluate(w)[:-2], "--device", "cuda:1"], "CUDA is not available"),
    "train cuda without cuda": (lambda w: [*train(w), "--device", "cuda", "--max-steps", "1"], "CUDA is not"),
    "absurd short side": (lambda w: predict(w, "{tmp}/out", "--short-side", "100000"), "--short-side 100000"),
    "negative short side": (lambda w: predict(w, "{tmp}/out", "--short-side", "-5"), "--short-side -5"),
    "zero short side": (lambda w: evaluate(w, "{tmp}/out", "--short-side", "0"), "--short-side 0"),
    "size not WxH": (lambda w: predict(w, "{tmp}/out", "--size", "abc"), "expected WIDTHxHEIGHT"),
    "size too small": (lambda w: predict(w, "{tmp}/out", "--size", "10x10"), "each side must be"),
    "both size options": (lambda w: predict(w, "{tmp}/out", "--size", "64x64", "--short-side", "64"), "not both"),
    "make-synthetic absurd size": (lambda w: ["make-synthetic", "{tmp}/s", "--size", "100000x100000"], "32..4096"),
    "make-synthetic negative size": (lambda w: ["make-synthetic", "{tmp}/s", "--size=-5x10"], "32..4096"),
    "make-synthetic negative count": (lambda w: ["make-synthetic", "{tmp}/s", "--train", "-1"], "--train must be"),
    # configuration checked before use
    "zero queries": (lambda w: [*train(w), "--set", "model.num_queries=0"], "num_queries must be at least 1"),
    "zero batch": (lambda w: [*train(w), "--set", "optim.batch_size=0"], "batch_size must be at least 1"),
    "boolean batch": (lambda w: [*train(w), "--set", "optim.batch_size=true"], "expected int, got True"),
    "zero checkpoint interval": (lambda w: [*train(w), "--set", "train.checkpoint_every=0"], "checkpoint_every"),
    "override not YAML": (lambda w: [*train(w), "--set", "optim.lr=["], "not valid YAML"),
    "unknown override": (lambda w: [*train(w), "--set", "optim.learning_rate=1"], "unknown key 'learning_rate'"),
    "negative max steps": (lambda w: [*train(w), "--max-steps", "-1"], "--max-steps -1"),
    "resume with overrides": (lambda w: [*train(w), "--resume", "--set", "optim.lr=1e-5"], "--resume continues"),
    "unusable train data": (lambda w: [*train(w), "--data", "no/such/thing"], "--data 'no/such/thing'"),
    # checkpoints
    "metadata not an object": (lambda w: ["info", w["listmeta"]], "not a JSON object"),
    "integer weights": (lambda w: ["info", w["ints"]], "wrong kind of values"),
    "missing checkpoint": (lambda w: ["info", "{tmp}/none.safetensors"], "none.safetensors"),
    # silent results that must not be
    "one unreadable image": (lambda w: [*predict(w)[:4], w["broken"], *predict(w)[5:]], "no image could be read"),
    "empty methods": (lambda w: predict(w, "{tmp}/out", "--methods", ""), "--methods is empty"),
    "unknown method": (lambda w: predict(w, "{tmp}/out", "--methods", "nosuch"), "unknown method 'nosuch'"),
    "NaN threshold": (lambda w: predict(w, "{tmp}/out", "--task", "oss", "--threshold", "nan"), "finite number"),
    "NaN model outputs": (
        lambda w: [
            "predict",
            "--model",
            w["nan_model"],
            "--input",
            w["images"],
            "--out",
            "{tmp}/out",
            "--device",
            "cpu",
        ],
        "non-finite scores",
    ),
    # options a task cannot honour
    "threshold without open-set task": (lambda w: predict(w, "{tmp}/out", "--threshold", "0.5"), "--task oss"),
    "mining without ops": (lambda w: predict(w, "{tmp}/out", "--mining", "paper"), "--mining and --mining-* apply"),
    "mining setting without ops": (
        lambda w: predict(w, "{tmp}/out", "--mining-components", "2"),
        "--mining and --mining-* apply to --task ops",
    ),
    "mining setting without paper mining": (
        lambda w: predict(w, "{tmp}/out", "--task", "ops", "--mining", "none", "--mining-iterations", "10"),
        "--mining-* set the paper mining",
    ),
    "zero mining components": (
        lambda w: predict(w, "{tmp}/out", "--task", "ops", "--mining-components", "0"),
        "number of components must be at least 1",
    ),
    "unknown overlap reading": (
        lambda w: predict(w, "{tmp}/out", "--task", "ops", "--mining-overlap", "dice"),
        "unknown overlap reading 'dice'; valid: iou, coverage, soft",
    ),
    # Maskomaly's query indices belong to one model
    "maskomaly's authors' queries on another model": (
        lambda w: predict(w, "{tmp}/out", "--methods", "maskomaly"),
        "belong to the authors' Swin-L Cityscapes",
    ),
    "densehybrid on a model without its head": (
        lambda w: predict(w, "{tmp}/out", "--methods", "densehybrid"),
        "needs DenseHybrid's dataset-posterior head, which this model lacks; fine-tune one with",
    ),
    "maskomaly queries without maskomaly": (
        lambda w: predict(w, "{tmp}/out", "--methods", "msp", "--maskomaly-queries", "1,2"),
        "--maskomaly-queries applies to the maskomaly method",
    ),
    "maskomaly queries beyond the model's": (
        lambda w: predict(w, "{tmp}/out", "--methods", "maskomaly", "--maskomaly-queries", "1,99"),
        "do not fit a model with",
    ),
    "maskomaly queries file that is not a selection": (
        lambda w: predict(w, "{tmp}/out", "--methods", "maskomaly", "--maskomaly-queries", w["listmeta_json"]),
        "expected select-queries' JSON",
    ),
    "maskomaly queries neither indices nor file": (
        lambda w: predict(w, "{tmp}/out", "--methods", "maskomaly", "--maskomaly-queries", "first,second"),
        "neither indices",
    ),
    "unknown category without ops": (lambda w: predict(w, "{tmp}/out", "--unknown-category", "3"), "--task ops"),
    "protocol without anomaly task": (
        lambda w: evaluate(w, "{tmp}/out", "--task", "oss", "--threshold", "0.5", "--protocol", "smiyc"),
        "--protocol applies to --task anomaly",
    ),
    "unknown task": (lambda w: evaluate(w, "{tmp}/out", "--task", "anomaly,segment"), "--task anomaly,segment"),
    "oss without thresholds": (lambda w: evaluate(w, "{tmp}/out", "--task", "oss"), "exactly one of"),
    "cross-calibration of one set": (
        lambda w: evaluate(w, "{tmp}/out", "--task", "oss", "--cross-calibrate"),
        "exactly two datasets",
    ),
    "negative max images": (lambda w: evaluate(w, "{tmp}/out", "--max-images", "-1"), "--max-images"),
    "a method twice": (lambda w: [*evaluate(w)[:6], "msp,msp", *evaluate(w)[7:]], "names a method twice"),
    "unknown dataset": (lambda w: [*evaluate(w)[:4], "nosuch:x", *evaluate(w)[5:]], "unknown dataset 'nosuch'"),
    "demo without images": (lambda w: ["demo", "--out", "{tmp}/d", "--model", w["model"], "--images", "0"], "at least"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line(world, tmp_path, capsys, case):
    build, message = CASES[case]
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in build(world)]
    code = main(args)
    err = capsys.readouterr().err
    lines = [
        line for line in err.splitlines() if line.strip() and not line.startswith("warning:") and "img/s" not in line
    ]
    assert code != 0, err
    assert "Traceback" not in err
    assert len(lines) == 1 and message in lines[0], err
    assert lines[0].startswith(f"mask2anomaly {args[0]}: ")
    assert not [p for p in Path(tmp_path).rglob("*.tmp")]


def test_there_are_forty_cases():
    assert len(CASES) >= 40


def test_a_closed_output_pipe_is_not_a_traceback(world):
    """``mask2anomaly info MODEL | head -c 10`` closes the pipe while the command still writes."""
    command = f"{sys.executable} -m mask2anomaly info {world['model']} | head -c 10"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") <= 1


def test_a_second_evaluation_into_the_same_folder_is_refused_while_the_first_runs(world, tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    (out / ".lock").write_text(str(os.getpid()))
    assert main(evaluate(world, str(out))) == 2
    (out / ".lock").write_text("999999999")  # a run that died: its lock is taken over
    assert main(evaluate(world, str(out))) == 0
    assert not (out / ".lock").exists() and (out / "metrics.json").exists()
    assert np.isfinite(json.loads((out / "metrics.json").read_text())["datasets"]["validation_validation"]["images"])
