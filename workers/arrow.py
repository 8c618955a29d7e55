"""Arrow arrays to and from numpy through their buffers, never through pandas.

``pa.array``, ``Array.to_numpy`` and ``Schema.empty_table`` import pandas (to check
what they were given, or to convert), whose import would cost every generator
process memory and CPU for nothing, and a scan of shards time. These make and read
the plain layouts the rows use: fixed-width numbers, booleans (a bit a value, least
significant first), validity bitmaps, and strings (32-bit offsets).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def bits(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """Arrow's bitmap (one bit a value, least significant first) as ``n`` bools from
    bit ``offset``."""
    packed = np.frombuffer(buffer, np.uint8)
    return np.unpackbits(packed, count=offset + n, bitorder="little")[offset:].view(bool)


def _bitmap(flags: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(flags, bitorder="little"))


def column(kind: pa.DataType, values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """An array of ``kind`` (a number or bool type) holding ``values``, null where
    ``valid`` is False (None: nowhere)."""
    if pa.types.is_boolean(kind):
        data = _bitmap(values)
    else:
        data = pa.py_buffer(np.ascontiguousarray(values, kind.to_pandas_dtype()))
    validity = None if valid is None else _bitmap(valid)
    return pa.Array.from_buffers(kind, len(values), [validity, data])


def strings(values: list[str]) -> pa.Array:
    """A string array of ``values``."""
    encoded = [value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)


def numpy(array: pa.Array) -> np.ndarray:
    """An array of numbers or booleans as a numpy array, read from its buffer (no copy
    for numbers); a null's slot holds whatever the writer left there."""
    data = array.buffers()[1]
    if pa.types.is_boolean(array.type):
        return bits(data, array.offset, len(array))
    width = array.type.bit_width // 8
    return np.frombuffer(data, array.type.to_pandas_dtype(), len(array), array.offset * width)


def valid(array: pa.Array) -> np.ndarray:
    """Which values of ``array`` are not null."""
    validity = array.buffers()[0]
    if validity is None:
        return np.ones(len(array), bool)
    return bits(validity, array.offset, len(array))
