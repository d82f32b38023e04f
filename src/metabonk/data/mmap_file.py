"""Zero-copy, read-only access to a safetensors file as numpy views over one memory map.

The safetensors layout is: 8-byte little-endian header length N, an N-byte JSON header mapping each tensor
name to {"dtype", "shape", "data_offsets"} (plus "__metadata__"), then the raw little-endian data. Viewing the
data through `np.memmap` lets a window of T frames be sliced without reading the rest of the episode and
copied once, straight into the training batch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype("<u1"), "I8": np.dtype("<i1"), "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"), "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
}
_MAX_HEADER = 100_000_000


def read_header(path: str | Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the byte offset where tensor data starts."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise MetabonkError(f"{path} is truncated (no safetensors header)")
            (n,) = struct.unpack("<Q", raw)
            if n > _MAX_HEADER:
                raise MetabonkError(f"{path} has an implausible safetensors header length {n}")
            text = f.read(n)
        header = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MetabonkError(f"{path} is not a readable safetensors file: {e}") from e
    if not isinstance(header, dict):
        raise MetabonkError(f"{path} has a malformed safetensors header")
    return header, 8 + n


class TensorFile:
    """A safetensors file opened once; `array(name)` is a read-only numpy view (no copy)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        header, start = read_header(self.path)
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self.entries: dict[str, dict[str, Any]] = header
        self._start = start
        self._mm: np.memmap | None = None
        size = self.path.stat().st_size
        for name, e in self.entries.items():
            self._check_entry(name, e, size)

    def _check_entry(self, name: str, e: Any, size: int) -> None:
        """Trust no header: shape, offsets and dtype must agree with each other and fit inside the file."""
        where = f"{self.path}: tensor '{name}'"
        if not isinstance(e, dict) or e.get("dtype") not in DTYPES:
            raise MetabonkError(f"{where} has an unsupported or missing dtype")
        shape, offsets = e.get("shape"), e.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise MetabonkError(f"{where} has no valid shape (got {shape!r:.60})")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise MetabonkError(f"{where} has no valid data_offsets")
        numel = 1
        for d in shape:
            numel *= d
        if offsets[1] - offsets[0] != numel * DTYPES[e["dtype"]].itemsize:
            raise MetabonkError(f"{where}: shape {shape} does not match its {offsets[1] - offsets[0]} bytes")
        if self._start + offsets[1] > size:
            raise MetabonkError(f"{self.path} is truncated: tensor '{name}' ends at byte {self._start + offsets[1]} "
                                f"of a {size}-byte file")

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name]["shape"])

    def array(self, name: str) -> np.ndarray:
        e = self.entries[name]
        dtype = DTYPES[e["dtype"]]
        begin, end = e["data_offsets"]
        shape = tuple(e["shape"])
        if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise MetabonkError(f"{self.path}: tensor '{name}' size does not match its shape {shape}")
        if end == begin:
            return np.zeros(shape, dtype)
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        return np.ndarray(shape, dtype=dtype, buffer=self._mm, offset=self._start + begin)

    def close(self) -> None:
        self._mm = None
