"""Reading safetensors from an open file: the header first, then only the tensors asked for (numpy, no torch).

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, N bytes of JSON
(`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`), then the data. Reading it
here instead of through the library lets one open handle serve the format check and the tensors, rejects a foreign or
damaged file from its header without reading the rest (a 100 MiB file costs its header), and gives every fault its
own message: truncated (shorter than the header declares), trailing bytes (longer), a dtype numpy cannot hold, a
metadata value that is not a string.
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["MAX_HEADER_BYTES", "SafetensorsFault", "Tensor", "looks_like_safetensors", "read_header", "read_tensor"]

#: A header is small (names, dtypes, shapes, our metadata); larger than this is not a file of ours.
MAX_HEADER_BYTES = 100_000_000
#: safetensors dtype -> numpy dtype (little-endian). Names not here (BF16, F8_*) are reported, not read.
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
ITEM_SIZES = {**{name: np.dtype(code).itemsize for name, code in DTYPES.items()}, "BF16": 2, "F8_E4M3": 1,
              "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1, "C64": 8}


class SafetensorsFault(ValueError):
    """The bytes are not a well-formed safetensors file; `kind` is "foreign" (not safetensors at all) or "damaged"."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class Tensor:
    """One tensor's entry in the header: its safetensors dtype name, shape and byte range in the data section."""

    def __init__(self, name: str, dtype: str, shape: tuple, begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end

    @property
    def numpy_dtype(self) -> np.dtype | None:
        return np.dtype(DTYPES[self.dtype]) if self.dtype in DTYPES else None


def looks_like_safetensors(head: bytes) -> bool:
    """Whether bytes start like safetensors: a header length whose upper 4 bytes are zero, then a JSON object.

    No text file (CSV, JSON) has four zero bytes there, whatever its first characters are.
    """
    return (len(head) >= 9 and head[4:8] == bytes(4) and 2 <= int.from_bytes(head[:8], "little") < MAX_HEADER_BYTES
            and head[8:9] == b"{")


def read_header(handle) -> tuple[dict, dict[str, Tensor], int]:
    """`(metadata, tensors by name, data offset)` from an open binary file positioned anywhere; checks the layout.

    Raises `SafetensorsFault` naming what is wrong.
    """
    size = os.fstat(handle.fileno()).st_size
    handle.seek(0)
    head = handle.read(8)
    if len(head) < 8 or head[4:] != bytes(4):
        raise SafetensorsFault("not a safetensors file (no header length at its start)", "foreign")
    length = int.from_bytes(head, "little")
    if not 2 <= length < MAX_HEADER_BYTES:
        raise SafetensorsFault(f"not a safetensors file (a header of {length:,} bytes)", "foreign")
    if 8 + length > size:
        raise SafetensorsFault(f"truncated: the header declares {length:,} bytes but the file has {size:,} in all",
                               "damaged")
    try:
        header = json.loads(handle.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SafetensorsFault("not a safetensors file (its header is not JSON)", "foreign") from None
    if not isinstance(header, dict):
        raise SafetensorsFault("not a safetensors file (its header is not a JSON object)", "foreign")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise SafetensorsFault("damaged: `__metadata__` is not an object of strings", "damaged")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise SafetensorsFault(f"damaged: metadata `{key}` is {type(value).__name__} {value!r:.40}, and "
                                   "safetensors "
                                   "metadata values are strings (the file was edited by hand)", "damaged")
    tensors, covered = {}, []
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            valid = (isinstance(dtype, str) and all(isinstance(n, int) and n >= 0 for n in (*shape, begin, end))
                     and begin <= end)
        except (TypeError, KeyError, ValueError):
            valid = False
        if not valid:
            raise SafetensorsFault(f"damaged: the header entry of tensor `{name}` is malformed", "damaged")
        expected = ITEM_SIZES.get(dtype, 0) * int(np.prod(shape, dtype=np.int64))
        if dtype in ITEM_SIZES and end - begin != expected:
            raise SafetensorsFault(f"damaged: tensor `{name}` ({dtype}, shape {list(shape)}) spans {end - begin} "
                                   "bytes, "
                                   f"expected {expected}", "damaged")
        tensors[name] = Tensor(name, dtype, shape, begin, end)
        covered.append((begin, end))
    data_size, position = size - 8 - length, 0
    for begin, end in sorted(covered):
        if begin != position:
            raise SafetensorsFault("damaged: the tensors' byte ranges overlap or leave gaps", "damaged")
        position = end
    if position > data_size:
        raise SafetensorsFault(f"truncated: the tensors need {position:,} bytes of data, the file holds {data_size:,} "
                               "(the write was probably interrupted)", "damaged")
    if position < data_size:
        raise SafetensorsFault(f"damaged: {data_size - position:,} bytes follow the last tensor (the file is longer "
                               "than its header declares; it was appended to or edited)", "damaged")
    return metadata, tensors, 8 + length


def read_tensor(handle, tensor: Tensor, data_offset: int) -> np.ndarray:
    """The values of `tensor` (a dtype numpy holds), read from the open file."""
    handle.seek(data_offset + tensor.begin)
    count = int(np.prod(tensor.shape, dtype=np.int64))
    values = np.frombuffer(handle.read(tensor.end - tensor.begin), dtype=tensor.numpy_dtype, count=count)
    return values.reshape(tensor.shape).astype(tensor.numpy_dtype.newbyteorder("="), copy=True)
