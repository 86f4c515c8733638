"""``mask2anomaly predict``: anomaly maps, open-set semantic labels and open-set panoptic segments
of image files, written per image, for every requested task and method in one pass.

Tasks:

* ``anomaly``: ``<stem>_<method>.npy`` (float32 scores at the image's size, higher = more
  anomalous) and ``<stem>_<method>.jpg`` (the heatmap over the image);
* ``oss``: ``<stem>_<method>_oss.png`` (uint8 class ids, K = unknown) and a coloured
  ``<stem>_<method>_oss_color.png``, at each method's threshold (given, or calibrated on a set);
* ``ops``: ``<stem>_<mining>_panoptic.png`` (COCO panoptic RGB ids) and ``panoptic_<mining>.json``
  with every image's ``segments_info`` (unknown instances get ``unknown_category``).

``OUT/inputs.json`` maps every output stem to its input file (stems are made unique when names
collide). A run takes ``OUT/.lock``: a second run into the same folder is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from mask2anomaly.errors import UserError
from mask2anomaly.inference.consumers.writers import OpenSetWriter, PanopticWriter, ScoreMapWriter
from mask2anomaly.inference.evaluate import TASKS, OpenSetOptions, calibrate, method_thresholds, minings
from mask2anomaly.inference.loop import Consumer, LoopResult, run
from mask2anomaly.inference.predictor import InputSize, open_model
from mask2anomaly.inference.sources import FileSource
from mask2anomaly.io_utils import ensure_writable_dir, folder_lock, write_text_atomic
from mask2anomaly.methods import AnomalyMethod, parse_method


@dataclass(frozen=True)
class PredictConfig:
    """Everything ``predict`` needs (see the module docstring).

    Attributes:
        model: a checkpoint, or ``KIND:PATH``.
        input: an image file or a folder of images.
        out: output folder.
        methods: method names or built methods.
        tasks: a non-empty subset of ``anomaly``, ``oss``, ``ops``.
        input_size: the network input size when not the model's own.
        open_set: thresholds (``threshold`` or ``calibration``) and minings of ``oss`` / ``ops``.
        unknown_category: ``category_id`` of unknown instances in the panoptic outputs.
        strict: an unreadable image is fatal (default: skipped, and an error if none is left).
        device: ``cpu``, ``cuda``, ``cuda:N`` (default: CUDA when available).
    """

    model: str
    input: str | Path
    out: Path
    methods: tuple[str | AnomalyMethod, ...] = ("mask2anomaly",)
    tasks: tuple[str, ...] = ("anomaly",)
    input_size: InputSize = field(default_factory=InputSize)
    open_set: OpenSetOptions = field(default_factory=OpenSetOptions)
    unknown_category: int = -1
    strict: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.methods:
            raise UserError("--methods is empty: give at least one method")
        if not self.tasks or any(t not in TASKS for t in self.tasks) or len(set(self.tasks)) != len(self.tasks):
            raise UserError(f"--task {','.join(self.tasks)}: expected a comma-separated subset of {', '.join(TASKS)}")
        options = self.open_set
        if options.cross_calibrate:
            raise UserError("--cross-calibrate is an evaluation protocol; predict takes --threshold or --calibration")
        needs_thresholds = "oss" in self.tasks or ("ops" in self.tasks and "rba" in options.minings)
        if needs_thresholds and options.thresholds_given != 1:
            raise UserError("oss (and ops with rba mining) needs exactly one of --threshold and --calibration")
        if not needs_thresholds and options.thresholds_given:
            raise UserError("--threshold and --calibration apply to --task oss (and ops with rba mining)")


def predict(config: PredictConfig) -> LoopResult:
    """Run every task on every image of ``config.input``; returns what the loop did."""
    out = ensure_writable_dir(config.out, "--out ")
    source = FileSource(config.input)
    with folder_lock(out):
        predictor = open_model(config.model, config.device, config.input_size)
        methods = [m if isinstance(m, AnomalyMethod) else parse_method(m) for m in config.methods]
        predictor.check_methods(methods)
        names = [m.name for m in methods]
        options = config.open_set
        thresholds = None
        if options.threshold is not None:
            thresholds = method_thresholds(options.threshold, names)
        elif options.calibration is not None:
            thresholds = calibrate(predictor, methods, options.calibration, strict=config.strict)
        consumers: list[Consumer] = []
        panoptic = None
        if "anomaly" in config.tasks:
            consumers.append(ScoreMapWriter(out))
        if "oss" in config.tasks:
            assert thresholds is not None
            consumers.append(OpenSetWriter(out, thresholds))
        if "ops" in config.tasks:
            if not predictor.is_mask_model:
                raise UserError("task ops needs a mask transformer; this model predicts per pixel")
            chosen = [
                replace(m, config=replace(m.config, unknown_category=config.unknown_category))
                for m in minings(options, names, thresholds)
            ]
            panoptic = PanopticWriter(out, chosen)
            consumers.append(panoptic)
        result = run(source, predictor, methods, consumers, strict=config.strict)
        if panoptic is not None:
            panoptic.finish()
        if result.num_images == 0:
            detail = f": {result.skipped[0]}" if result.skipped else ""
            raise UserError(f"{config.input}: no image could be read, nothing was written{detail}")
        inputs = {stem: name for stem, name in zip(source.stems, source.names, strict=True)}
        write_text_atomic(out / "inputs.json", json.dumps(inputs, indent=1) + "\n")
    return result
