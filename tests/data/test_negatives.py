"""DenseHybrid's negative pasting on worked examples: rectangle sides from the authors' set, the
jittered window of a cut-out, the hard composite at a placement, and a window larger than the crop."""

from __future__ import annotations

import numpy as np

from mask2anomaly.data.anomaly_mix import Cutout
from mask2anomaly.data.negatives import Placement, negative_window, paste_window, place, rectangle_mask


def test_rectangle_sides_come_from_16_to_patch_minus_8_in_steps_of_8():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        mask = rectangle_mask(48, rng)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert mask.sum() == h * w  # one filled rectangle
        seen |= {int(h), int(w)}
    assert seen == {16, 24, 32, 40}


def test_window_of_a_uniform_cutout():
    """A 20 x 40 cut-out of one colour whose object is its left half, jitter fixed at 1: resized to
    short side 8 (8 x 16), the 8 x 8 window starts at column 0..8. With the object mask chosen, the
    pasted pixels are the object's columns inside the window; with rectangles, a 16-px side does not
    fit an 8-px patch, so the side is half the patch."""
    image = np.full((20, 40, 3), (10, 200, 30), np.uint8)
    mask = np.zeros((20, 40), bool)
    mask[:, :20] = True
    cutout = Cutout("c", image, mask)
    window, chosen = negative_window(cutout, 8, (1.0, 1.0), 0.0, np.random.default_rng(3))
    assert (window == (10, 200, 30)).all()
    columns = np.flatnonzero(chosen.any(0))
    assert chosen[:, columns].all() and columns[0] == 0 and 1 <= columns.size <= 8
    _, rect = negative_window(cutout, 8, (1.0, 1.0), 1.0, np.random.default_rng(3))
    assert rect.sum() == 16


def test_hard_composite_at_a_placement():
    image = np.zeros((6, 6, 3), np.uint8)
    window = np.full((4, 4, 3), 9, np.uint8)
    mask = np.eye(4, dtype=bool)
    out, pasted = paste_window(image, window, Placement(1, 2, mask))
    expected = np.zeros((6, 6), bool)
    expected[[1, 2, 3, 4], [2, 3, 4, 5]] = True
    assert (pasted == expected).all()
    assert (out[..., 0] == np.where(expected, 9, 0)).all() and image.sum() == 0


def test_a_window_larger_than_the_crop_is_cut():
    mask = np.ones((8, 8), bool)
    where = place((5, 20), mask, np.random.default_rng(0))
    assert where.top == 0 and where.mask.shape == (5, 8) and 0 <= where.left <= 12
    out, pasted = paste_window(np.zeros((5, 20, 3), np.uint8), np.ones((8, 8, 3), np.uint8), where)
    assert pasted.sum() == 40 and out.sum() == 40 * 3
