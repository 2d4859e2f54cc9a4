"""Quantised, entropy-coded arrays in one file.

A container holds named arrays, each stored as one of:

* ``raw``: the array's bytes as they are (for example fp16 positions), DEFLATE-coded;
* ``quantized``: ``bits``-bit uniform min-max quantisation (per channel), the integer symbols DEFLATE-coded.

DEFLATE (zlib, level 9) is LZ77 followed by Huffman coding, so the symbol streams are entropy-coded as in C3DGS's
Huffman post-processing, without a dependency. File layout: ``b"NGCP"``, a little-endian uint32 header length,
a UTF-8 JSON header (names, dtypes, shapes, quantisation ranges, byte offsets, user metadata), then the payloads.

Example:
    >>> arrays = {"means": EncodedArray.raw(means.half()), "opacity": EncodedArray.quantize(opacity, bits=8)}
    >>> size = write_container("scene.ngc", arrays, meta={"sh_degree": 0})
    >>> decoded, meta = read_container("scene.ngc")  # name -> float32 / raw-dtype tensors
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

MAGIC = b"NGCP"


def quantize(x: Tensor, bits: int, per_channel: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform min-max quantisation of ``x [N, ...]`` to ``bits`` bits.

    Returns ``(symbols uint8/uint16 [N, ...], lo [C], hi [C])`` with channels along the last axis when
    ``per_channel`` (else one range). Round-to-nearest; :func:`dequantize` inverts up to ``(hi - lo) / (2^bits - 1) / 2``.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in [1, 16], got {bits}")
    a = x.detach().float().cpu().numpy()
    flat = a.reshape(-1, a.shape[-1]) if (per_channel and a.ndim > 1) else a.reshape(-1, 1)
    lo = flat.min(axis=0) if flat.size else np.zeros(flat.shape[1], np.float32)
    hi = flat.max(axis=0) if flat.size else np.zeros(flat.shape[1], np.float32)
    levels = (1 << bits) - 1
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((flat - lo) / span * levels).clip(0, levels)
    dtype = np.uint8 if bits <= 8 else np.uint16
    return q.astype(dtype).reshape(a.shape), lo.astype(np.float32), hi.astype(np.float32)


def dequantize(symbols: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int) -> Tensor:
    """Inverse of :func:`quantize` (float32)."""
    levels = (1 << bits) - 1
    channels = lo.shape[0]
    flat = symbols.reshape(-1, channels).astype(np.float32)
    values = lo + flat / levels * (hi - lo)
    return torch.from_numpy(values.reshape(symbols.shape).astype(np.float32))


@dataclass
class EncodedArray:
    """One array ready for the container (build with :meth:`raw` or :meth:`quantize`)."""

    payload: np.ndarray
    kind: str
    bits: int = 0
    lo: Optional[np.ndarray] = None
    hi: Optional[np.ndarray] = None
    extra: Dict[str, object] = field(default_factory=dict)

    @classmethod
    def raw(cls, x: Union[Tensor, np.ndarray]) -> "EncodedArray":
        a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        return cls(payload=np.ascontiguousarray(a), kind="raw")

    @classmethod
    def quantize(cls, x: Tensor, bits: int, per_channel: bool = True) -> "EncodedArray":
        symbols, lo, hi = quantize(x, bits, per_channel)
        return cls(payload=symbols, kind="quantized", bits=bits, lo=lo, hi=hi)

    def decode(self) -> Tensor:
        if self.kind == "raw":
            return torch.from_numpy(self.payload.copy())
        assert self.lo is not None and self.hi is not None
        return dequantize(self.payload, self.lo, self.hi, self.bits)


def container_bytes(arrays: Dict[str, EncodedArray], meta: Optional[dict] = None) -> bytes:
    """The bytes :func:`write_container` writes (entropy-coded ``arrays`` and JSON-serialisable ``meta``)."""
    header: Dict[str, object] = {"meta": meta or {}, "arrays": {}}
    blobs = []
    offset = 0
    for name, enc in arrays.items():
        blob = zlib.compress(enc.payload.tobytes(), 9)
        header["arrays"][name] = {
            "kind": enc.kind, "dtype": enc.payload.dtype.str, "shape": list(enc.payload.shape), "bits": enc.bits,
            "lo": None if enc.lo is None else enc.lo.tolist(), "hi": None if enc.hi is None else enc.hi.tolist(),
            "offset": offset, "nbytes": len(blob), "extra": enc.extra,
        }
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    return b"".join([MAGIC, struct.pack("<I", len(head)), head, *blobs])


def write_container(path: Union[str, Path], arrays: Dict[str, EncodedArray], meta: Optional[dict] = None) -> int:
    """Write ``arrays`` (entropy-coded) and JSON-serialisable ``meta`` to ``path``; returns the file size in bytes."""
    path = Path(path)
    path.write_bytes(container_bytes(arrays, meta))
    return path.stat().st_size


def read_container(path: Union[str, Path]) -> Tuple[Dict[str, EncodedArray], dict]:
    """Read a container written by :func:`write_container`: ``(name -> EncodedArray, meta)``.

    Raises ``ValueError`` naming the file when it is not a container or is truncated.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != MAGIC or len(data) < 8:
        raise ValueError(f"{path}: not an ng-methods compact file (bad magic)")
    (head_len,) = struct.unpack("<I", data[4:8])
    try:
        header = json.loads(data[8 : 8 + head_len].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: corrupt header ({err})") from err
    base = 8 + head_len
    arrays: Dict[str, EncodedArray] = {}
    for name, info in header["arrays"].items():
        start = base + info["offset"]
        blob = data[start : start + info["nbytes"]]
        if len(blob) != info["nbytes"]:
            raise ValueError(f"{path}: truncated payload for {name!r}")
        payload = np.frombuffer(zlib.decompress(blob), dtype=np.dtype(info["dtype"])).reshape(info["shape"])
        arrays[name] = EncodedArray(
            payload=payload, kind=info["kind"], bits=info["bits"],
            lo=None if info["lo"] is None else np.asarray(info["lo"], np.float32),
            hi=None if info["hi"] is None else np.asarray(info["hi"], np.float32), extra=info.get("extra", {}),
        )
    return arrays, header["meta"]
