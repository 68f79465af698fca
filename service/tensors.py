"""Tensors as the Open Inference Protocol carries them: a name, a datatype ("UINT8", "FP32",
"BYTES", ...), a shape and the elements, either as JSON lists or as raw little-endian bytes
(REST's binary-tensor extension, gRPC's raw contents). BYTES elements are raw as a 4-byte
little-endian length, then the bytes, one after another.
"""
import struct
from dataclasses import dataclass
from typing import Any, List, Sequence

import numpy as np

from .errors import ServiceError

DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
          "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
          "BYTES": np.object_}


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: List[int]
    data: np.ndarray  # of `shape`; BYTES: an object array of bytes


def bad(detail: str) -> ServiceError:
    return ServiceError(400, detail)


def _count(shape: Sequence[int]) -> int:
    if any(int(d) < 0 for d in shape):
        raise bad(f"shape {list(shape)} has a negative dimension")
    return int(np.prod(shape, dtype=np.int64))


def _dtype(name: str, datatype: str):
    if datatype not in DTYPES:
        raise bad(f"input {name!r}: unknown datatype {datatype!r}")
    return DTYPES[datatype]


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> Tensor:
    count, dtype = _count(shape), _dtype(name, datatype)
    if datatype == "BYTES":
        elements, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise bad(f"input {name!r}: truncated BYTES element length")
            (length,) = struct.unpack_from("<I", raw, offset)
            if offset + 4 + length > len(raw):
                raise bad(f"input {name!r}: BYTES element of {length} bytes runs past the data")
            elements.append(raw[offset + 4:offset + 4 + length])
            offset += 4 + length
        if len(elements) != count:
            raise bad(f"input {name!r}: {len(elements)} BYTES elements for shape {list(shape)}")
        array = np.empty(count, np.object_)
        array[:] = elements
        return Tensor(name, datatype, list(shape), array.reshape(shape))
    size = count * np.dtype(dtype).itemsize
    if len(raw) != size:
        raise bad(f"input {name!r}: {len(raw)} bytes of data for {datatype} shape "
                  f"{list(shape)} ({size} bytes)")
    return Tensor(name, datatype, list(shape),
                  np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(shape))


def from_json(name: str, datatype: str, shape: Sequence[int], data: Any) -> Tensor:
    """`data`: the JSON list (flat or nested). BYTES elements are strings, taken as UTF-8."""
    count, dtype = _count(shape), _dtype(name, datatype)
    flat = np.asarray(data, dtype=np.object_ if datatype == "BYTES" else None).reshape(-1)
    if flat.size != count:
        raise bad(f"input {name!r}: {flat.size} elements for shape {list(shape)}")
    if datatype == "BYTES":
        array = np.empty(count, np.object_)
        array[:] = [e.encode() if isinstance(e, str) else bytes(e) for e in flat]
        return Tensor(name, datatype, list(shape), array.reshape(shape))
    try:
        return Tensor(name, datatype, list(shape), flat.astype(dtype).reshape(shape))
    except (TypeError, ValueError) as e:
        raise bad(f"input {name!r}: data is not {datatype}: {e}") from None


def to_raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(e)) + e for e in tensor.data.reshape(-1))
    return np.ascontiguousarray(tensor.data, np.dtype(DTYPES[tensor.datatype])
                                .newbyteorder("<")).tobytes()


def to_json(tensor: Tensor) -> list:
    if tensor.datatype == "BYTES":
        return [e.decode("utf-8", "replace") for e in tensor.data.reshape(-1)]
    return tensor.data.reshape(-1).tolist()
