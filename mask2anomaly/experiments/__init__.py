"""Whole experiments built from training and the inference loop: the demo on the synthetic
benchmark and the paper's ablation in kind."""
