"""What the inference loop feeds: metrics, calibration, query selection, validation and writers.

One module per task or kind of output; each consumer implements ``update`` (one image) and, for
``torchrun``, ``merge``.
"""
