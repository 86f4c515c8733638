"""Overrides that shrink the synthetic_cpu recipes to a few seconds of training, for pipeline tests."""

from __future__ import annotations

TINY_RECIPE_OVERRIDES = (
    "optim.batch_size=2",
    "optim.warmup_steps=1",
    "data.train=synthetic:train?n=4&size=64x128",
    "data.val=null",
    "data.crop_size=[64,96]",
    "data.short_edge=[56,72]",
    "data.max_long=256",
    "model.num_queries=10",
    "model.num_decoder_layers=2",
    "model.hidden_dim=64",
    "model.conv_dim=64",
    "model.mask_dim=64",
    "model.dim_feedforward=96",
    "model.encoder_feedforward_dim=96",
    "model.encoder_layers=1",
    "loss.num_points=256",
    "train.checkpoint_every=1",
)
