"""Order-preserving integer keys for IEEE floats.

Reinterpreting a float's bits as an unsigned integer and flipping them (all bits for negative
numbers, only the sign bit for the others) gives keys whose unsigned order is the float order. Keys
let the exact pixel metrics count scores with integer sorts and searches and, for float16, with a
65536-bucket ``bincount``. ``-0.0`` is mapped to the key of ``+0.0`` so equal floats share a key.
"""

from __future__ import annotations

import numpy as np

_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}
_FLOAT = {2: np.float16, 4: np.float32, 8: np.float64}


def key_dtype(float_dtype: np.dtype) -> type[np.unsignedinteger]:
    """Unsigned integer type with the width of ``float_dtype``."""
    return _UINT[np.dtype(float_dtype).itemsize]


def float_to_key(values: np.ndarray) -> np.ndarray:
    """Keys of ``values`` (finite floats of any width), same shape, unsigned of the same width."""
    width = values.dtype.itemsize
    uint = _UINT[width]
    bits = np.ascontiguousarray(values).view(uint)
    sign_bit = uint(1) << uint(8 * width - 1)
    negative = bits > sign_bit
    if not negative.any():
        return bits | sign_bit
    return (bits | sign_bit) ^ (negative * uint(np.iinfo(uint).max))


def key_to_float(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`float_to_key`."""
    width = keys.dtype.itemsize
    uint = _UINT[width]
    sign_bit = uint(1) << uint(8 * width - 1)
    positive = (keys >> uint(8 * width - 1)).astype(bool)
    flip = np.where(positive, sign_bit, np.iinfo(uint).max).astype(uint)
    return (keys ^ flip).view(_FLOAT[width])


def widen_keys(keys: np.ndarray, width: int) -> np.ndarray:
    """Re-express keys of a narrower float type as keys of the float type of ``width`` bytes."""
    if keys.dtype.itemsize == width:
        return keys
    return float_to_key(key_to_float(keys).astype(_FLOAT[width]))
