"""A tiny training run configuration for tests (in-memory synthetic scenes, small model)."""

from __future__ import annotations

from dataclasses import replace

from mask2anomaly.training.config import DataConfig, LossConfig, OptimConfig, RunConfig, TrainConfig
from tests.models.tiny import tiny_config


def tiny_run(steps: int = 4, batch_size: int = 2, accumulation: int = 1, **train) -> RunConfig:
    return RunConfig(
        model=replace(tiny_config("global_masked", num_classes=19, num_queries=10), num_decoder_layers=2),
        data=DataConfig(
            train="synthetic:train?n=6&size=64x128",
            val=None,
            crop_size=(64, 96),
            short_edge=(56, 72),
            max_long=256,
        ),
        optim=OptimConfig(
            lr=1e-3,
            max_steps=steps,
            batch_size=batch_size,
            accumulation=accumulation,
            warmup_steps=2,
            warmup_factor=0.1,
            clip_grad=1.0,
        ),
        loss=LossConfig(num_points=256),
        train=TrainConfig(seed=3, checkpoint_every=1, log_every=1, **train),
    )
