"""Command-line interface: ``mask2anomaly COMMAND ...``."""
