"""mask2anomaly: anomaly segmentation, open-set semantic and open-set panoptic segmentation of road
scenes with mask transformers (Mask2Anomaly and its peers), with benchmark-exact metrics."""

__version__ = "0.1.0"

from mask2anomaly.models.loading import load_model, save_model

__all__ = ["__version__", "load_model", "save_model"]
