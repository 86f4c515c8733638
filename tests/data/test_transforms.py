"""Training transforms keep images and label maps aligned."""

from __future__ import annotations

import numpy as np

from mask2anomaly import data
from mask2anomaly.data.base import VOID
from mask2anomaly.data.transforms import TrainTransform, color_jitter, crop, hflip, resize, resize_shortest_edge


def _sample():
    return data.open("synthetic", "test", n=1, seed=2, size="64x128")[0]


def test_flip_twice_is_identity_and_flip_mirrors() -> None:
    s = _sample()
    f = hflip(s)
    np.testing.assert_array_equal(f.semantic[:, 0], s.semantic[:, -1])
    np.testing.assert_array_equal(f.image[:, 3], s.image[:, -4])
    back = hflip(f)
    for field in ("image", "semantic", "anomaly", "instances"):
        np.testing.assert_array_equal(getattr(back, field), getattr(s, field))


def test_crop_pads_with_void() -> None:
    s = _sample()
    c = crop(s, -4, 120, (16, 16))
    assert c.image.shape == (16, 16, 3)
    assert (c.semantic[:4] == VOID).all() and (c.semantic[:, 8:] == VOID).all()
    assert (c.image[:4] == 0).all() and (c.instances[:, 8:] == 0).all()
    np.testing.assert_array_equal(c.semantic[4:, :8], s.semantic[:12, 120:])
    ids, counts = np.unique(c.instances, return_counts=True)
    assert {x.id: x.area for x in c.segments} == {i: n for i, n in zip(ids.tolist(), counts.tolist(), strict=True) if i}


def test_resize_uses_nearest_labels() -> None:
    s = _sample()
    r = resize(s, (128, 256))
    assert r.image.shape == (128, 256, 3)
    np.testing.assert_array_equal(r.semantic[::2, ::2], s.semantic)
    assert set(np.unique(r.instances)) == set(np.unique(s.instances))
    assert resize_shortest_edge(s, 32).size == (32, 64)
    assert resize_shortest_edge(s, 100, max_long=150).size == (75, 150)


def test_color_jitter() -> None:
    image = _sample().image
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(color_jitter(image, rng, p=0.0), image)
    out = color_jitter(image, rng, p=1.0)
    assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image)
    grey = np.full((4, 4, 3), 100, np.uint8)
    shifted = color_jitter(
        grey, np.random.default_rng(1), brightness=20, contrast=(1, 1), saturation=(1, 1), hue_degrees=0, p=1.0
    )
    assert np.ptp(shifted) == 0 and abs(int(shifted[0, 0, 0]) - 100) <= 20  # grey stays grey


def test_train_transform_output() -> None:
    s = _sample()
    t = TrainTransform(crop_size=(48, 96), short_edge=(48, 96))
    rng = np.random.default_rng(0)
    for _ in range(5):
        out = t(s, rng)
        assert out.image.shape == (48, 96, 3) and out.semantic.shape == (48, 96)
        assert set(np.unique(out.semantic)) <= set(np.unique(s.semantic)) | {VOID}
        assert set(np.unique(out.anomaly)) <= {0, 1, VOID}
