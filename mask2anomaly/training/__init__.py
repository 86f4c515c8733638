"""Training: typed run configurations and the published recipes, the training data (with
AnomalyMix), checkpoints that resume exactly, and the trainer (single process or ``torchrun``)."""
