"""The open-set labelling rule (DenseHybrid's ``evaluate_osr.py``): closed-set class, unknown only
where the score is strictly above the threshold."""

from __future__ import annotations

import numpy as np

from mask2anomaly.methods.open_set_semantic import open_set_labels


def test_pixels_above_the_threshold_become_the_unknown_class():
    closed = np.array([[0, 2, 1, 1]])
    scores = np.array([[-5.0, -6.0, -0.5, -4.0]], np.float32)
    assert open_set_labels(closed, scores, -1.0, 3).tolist() == [[0, 2, 3, 1]]


def test_a_score_equal_to_the_threshold_stays_known():
    closed = np.array([[0, 1]])
    scores = np.array([[-1.0, -0.5]], np.float32)
    assert open_set_labels(closed, scores, -1.0, 2).tolist() == [[0, 2]]


def test_the_threshold_is_compared_in_the_score_dtype():
    """A float64 threshold just above a float16 score rounds to it and keeps the pixel known, as
    DenseHybrid's torch comparison in the score dtype does."""
    scores = np.array([[np.float16(0.3)]], np.float16)
    assert open_set_labels(np.array([[0]]), scores, 0.29995, 5).tolist() == [[0]]
