"""The evaluate-maps and evaluate-panoptic commands: results against independent computations,
and one-line errors (no traceback) on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from mask2anomaly.cli.main import main
from tests.metrics import naive


def write_pair(root, stem, scores, labels):
    (root / "scores").mkdir(exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    np.save(root / "scores" / f"{stem}.npy", scores)
    Image.fromarray(labels.astype(np.uint8)).save(root / "labels" / f"{stem}.png")


def make_dataset(root, n=3, dtype=np.float32):
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        labels = np.zeros((12, 16), np.uint8)
        labels[2:10, 3:12] = 1
        labels[0, :] = 255
        scores = (rng.random((12, 16)) * 0.5 + 0.45 * labels).astype(dtype)
        write_pair(root, f"img{i}", scores, labels)
        images.append((scores, labels))
    return images


def evaluate_maps(tmp_path, *extra):
    out = tmp_path / "out.json"
    code = main(
        [
            "evaluate-maps",
            "--scores",
            str(tmp_path / "scores"),
            "--labels",
            str(tmp_path / "labels"),
            "--json",
            str(out),
            "--track",
            "obstacle",
            *extra,
        ]
    )
    return code, out


def test_evaluate_maps_matches_independent_computations(tmp_path, capsys):
    images = make_dataset(tmp_path)
    code, out = evaluate_maps(tmp_path)
    assert code == 0
    result = json.loads(out.read_text())
    scores = np.concatenate([s[lab != 255] for s, lab in images]).astype(np.float64)
    labels = np.concatenate([lab[lab != 255] for _, lab in images])
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    assert result["num_images"] == 3
    assert result["pixel"]["auprc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-9)
    assert result["pixel"]["auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert result["pixel"]["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
    brute = naive.exact_metrics(images)
    threshold = brute["best_f1_threshold"]
    assert result["pixel"]["best_f1_threshold"] == threshold
    segeval = naive.segeval(images, threshold, 50, 10)
    assert result["component"] == pytest.approx({**segeval, "threshold": threshold}, abs=1e-12)
    assert result["mdm"] == naive.longest_run_above(naive.mdm_f1_curve(images)) / 1000
    assert "AuPRC" in capsys.readouterr().out


def test_smiyc_protocol_and_given_threshold(tmp_path):
    images = make_dataset(tmp_path, dtype=np.float16)
    code, out = evaluate_maps(tmp_path, "--protocol", "smiyc", "--component-threshold", "0.6")
    result = json.loads(out.read_text())
    assert code == 0
    assert result["pixel"]["auprc"] == pytest.approx(naive.smiyc_metrics(images)["auprc"], abs=1e-12)
    assert result["component"]["threshold"] == 0.6
    assert result["component"]["siou"] == pytest.approx(naive.segeval(images, 0.6, 50, 10)["siou"], abs=1e-12)


def test_dataset_without_anomaly_warns_and_writes_null(tmp_path, capsys):
    write_pair(tmp_path, "a", np.random.default_rng(0).random((8, 8)).astype(np.float32), np.zeros((8, 8)))
    code, out = evaluate_maps(tmp_path)
    result = json.loads(out.read_text())
    err = capsys.readouterr().err
    assert code == 0 and result["pixel"]["auprc"] is None and result["mdm"] is None
    assert "warning: AuPRC, AUROC, FPR95 and best F1 undefined (no anomaly pixel" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unpaired", "no labels file (<stem>.png) for 1 stem(s): b"),
        ("shape", "differs from"),
        ("nan", "scores contain NaN values"),
        ("labels", "a.png: unexpected label values 7"),
        ("labels256", "a.png: unexpected label values 256"),
        ("labels-rgb", "a.png: label PNG must be single-channel"),
        ("3d", "score map must be 2-D"),
        ("empty", "no <stem>.npy score maps"),
        ("json-folder", "--json"),
        ("json-under-file", "--json"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, capsys, setup, message):
    good = np.zeros((4, 4), np.float32)
    labels = np.zeros((4, 4), np.uint8)
    labels[0, 0] = 1
    if setup == "empty":
        (tmp_path / "scores").mkdir()
        (tmp_path / "labels").mkdir()
    else:
        write_pair(tmp_path, "a", good, labels)
    if setup == "unpaired":
        np.save(tmp_path / "scores" / "b.npy", good)
    elif setup == "shape":
        np.save(tmp_path / "scores" / "a.npy", np.zeros((4, 5), np.float32))
    elif setup == "nan":
        np.save(tmp_path / "scores" / "a.npy", np.full((4, 4), np.nan, np.float32))
    elif setup == "labels":
        Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "labels" / "a.png")
    elif setup == "labels256":
        Image.fromarray(np.full((4, 4), 256, np.uint16)).save(tmp_path / "labels" / "a.png")
    elif setup == "labels-rgb":
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "labels" / "a.png")
    elif setup == "3d":
        np.save(tmp_path / "scores" / "a.npy", np.zeros((1, 4, 4), np.float32))
    elif setup == "json-folder":
        (tmp_path / "out.json").mkdir()
    elif setup == "json-under-file":
        (tmp_path / "blocker").write_text("a file")
    if setup == "json-under-file":
        folders = ["--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels")]
        code = main(["evaluate-maps", *folders, "--json", str(tmp_path / "blocker" / "out.json")])
    else:
        code, _ = evaluate_maps(tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("**/.out.json.*"))


def test_json_in_a_place_that_cannot_be_written(tmp_path, capsys):
    """/proc takes no new files, even from root (chmod would not stop a root user)."""
    make_dataset(tmp_path)
    folders = ["--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels")]
    code = main(["evaluate-maps", *folders, "--json", "/proc/mask2anomaly-out.json"])
    err = capsys.readouterr().err
    assert code == 2 and "--json /proc/mask2anomaly-out.json: cannot write there" in err
    assert len(err.strip().splitlines()) == 1


def test_mask2anomaly_protocol_through_the_command(tmp_path):
    images = make_dataset(tmp_path)
    write_pair(tmp_path, "z_no_anomaly", np.full((12, 16), 0.99, np.float32), np.zeros((12, 16), np.uint8))
    code, out = evaluate_maps(tmp_path, "--protocol", "mask2anomaly")
    result = json.loads(out.read_text())
    scores = np.concatenate([s[lab != 255] for s, lab in images])
    labels = np.concatenate([lab[lab != 255] for _, lab in images])
    assert code == 0 and result["num_images"] == 4 and result["num_images_skipped"] == 1
    assert result["pixel"]["auprc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_evaluate_maps_does_not_import_torch(tmp_path):
    """The metric tool runs in a process without torch (its start-up would cost seconds)."""
    make_dataset(tmp_path)
    code = (
        "import sys\n"
        "from mask2anomaly.cli.main import main\n"
        f"assert main(['evaluate-maps', '--scores', {str(tmp_path / 'scores')!r}, '--labels', "
        f"{str(tmp_path / 'labels')!r}]) == 0\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "heavy: []" in result.stdout


@pytest.mark.slow
def test_evaluate_panoptic_ground_truth_against_itself(shared_data, tmp_path, capsys):
    root = shared_data / "coco_panoptic_sample" / "sample_data"
    if not (root / "panoptic_examples.json").is_file():
        pytest.skip(f"COCO panoptic sample not found under {root}")
    gt_json, gt_dir = str(root / "panoptic_examples.json"), str(root / "panoptic_examples")
    out = tmp_path / "pq.json"
    code = main(
        [
            "evaluate-panoptic",
            "--gt-json",
            gt_json,
            "--gt-dir",
            gt_dir,
            "--pred-json",
            gt_json,
            "--pred-dir",
            gt_dir,
            "--json",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert code == 0 and result["unknown"] is None
    assert {k: result["all"][k] for k in ("pq", "sq", "rq")} == {"pq": 1.0, "sq": 1.0, "rq": 1.0}
    code = main(
        [
            "evaluate-panoptic",
            "--gt-json",
            gt_json,
            "--gt-dir",
            gt_dir,
            "--pred-json",
            gt_json,
            "--pred-dir",
            gt_dir,
            "--unknown-categories",
            "no-such-thing",
        ]
    )
    assert code == 2 and "no categories named no-such-thing" in capsys.readouterr().err
