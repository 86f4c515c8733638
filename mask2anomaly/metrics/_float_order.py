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


def float_to_key(values: np.ndarray, in_place: bool = False) -> np.ndarray:
    """Keys of ``values`` (finite floats of any width), same shape, unsigned of the same width.

    With ``in_place`` the keys are written over ``values`` (which must be C-contiguous and owned
    by the caller) and returned as a view of it.
    """
    width = values.dtype.itemsize
    uint = _UINT[width]
    bits = (values if in_place else np.ascontiguousarray(values)).view(uint)
    sign_bit = uint(1) << uint(8 * width - 1)
    out = bits if in_place else None
    negative = bits > sign_bit
    if not negative.any():
        return np.bitwise_or(bits, sign_bit, out=out)
    flipped = np.bitwise_or(bits, sign_bit, out=out)
    return np.bitwise_xor(flipped, negative * uint(np.iinfo(uint).max), out=out)


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
