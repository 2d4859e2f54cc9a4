"""Compact storage of (dynamic) Gaussians: Light4GS-style quantised, entropy-coded SH and temporal parameters.

What is stored, per ``gauss_params`` tensor of any ``NGSplatModel`` subclass:

* ``means``, ``scales``, ``quats``, ``opacities``: float32 as they are (Light4GS keeps its 14 geometry/colour floats
  per Gaussian uncompressed; we keep 11 and code the colour DC), DEFLATE-coded;
* ``features_rest`` (SH AC bands) and ``features_dc``: uniform scalar quantisation with a fixed step
  (Light4GS: ``Q = 0.002`` for SH), the integer symbols DEFLATE-coded. Light4GS codes the SH symbols with a learned
  CompressAI ``EntropyBottleneck`` + torchac and trains with additive quantisation noise; we code them with
  DEFLATE (LZ77 + Huffman) after training, which needs no extra dependency and no training change;
* every other per-Gaussian tensor (Gaussian-Flow's DDDM coefficients and time offsets, or a 4D method's temporal
  parameters): quantised with ``temporal_step`` (zero-initialised coefficients that never moved stay exactly 0 and
  cost almost nothing after entropy coding).

Decoding error is at most half a step per value, so positions move by at most ~``1.5 * temporal_step`` (the DDDM
basis is divided by L) and SH coefficients by ``sh_step / 2``; :func:`load_compact` restores the model in place.
The container is :mod:`ng_methods.compression.codec`'s single file; step-quantised arrays are stored as ``raw``
integer symbols with the step in the array's ``extra`` metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ng_methods.compression.codec import EncodedArray, read_container, write_container
from ng_methods.splat.model import NGSplatModel

GEOMETRY = ("means", "scales", "quats", "opacities")
SH = ("features_dc", "features_rest")
FORMAT = "ng-dynamic-gaussians/1"


@dataclass
class DynamicCodecConfig:
    """Quantisation steps of the compact file (entropy coding is lossless)."""

    sh_step: float = 0.002
    """Quantisation step of the SH AC coefficients (Light4GS's ``Q``)."""
    dc_step: float = 0.002
    """Quantisation step of the SH DC coefficients (Light4GS stores them as float32)."""
    temporal_step: float = 1e-4
    """Quantisation step of every non-geometry, non-SH per-Gaussian tensor (DDDM coefficients, time offsets)."""


def step_quantize(x: Tensor, step: float) -> EncodedArray:
    """``round(x / step)`` as the narrowest signed integers that hold it, tagged with the step."""
    symbols = torch.round(x.detach().float().cpu() / step).to(torch.int64).numpy()
    peak = int(np.abs(symbols).max()) if symbols.size else 0
    dtype = np.int8 if peak < 2**7 else np.int16 if peak < 2**15 else np.int32 if peak < 2**31 else np.int64
    encoded = EncodedArray.raw(symbols.astype(dtype))
    encoded.extra = {"step": step}
    return encoded


def decode(encoded: EncodedArray) -> Tensor:
    """Float32 tensor of one stored array (step-quantised or raw)."""
    if "step" in encoded.extra:
        return torch.from_numpy(encoded.payload.astype(np.float32) * np.float32(encoded.extra["step"]))
    return encoded.decode().float()


def uncompressed_bytes(model: NGSplatModel) -> int:
    """Bytes of all per-Gaussian parameters as float32 (what a checkpoint stores for them)."""
    return sum(p.numel() * 4 for p in model.gauss_params.values())


def encode_gaussians(model: NGSplatModel, config: DynamicCodecConfig) -> Dict[str, EncodedArray]:
    """The container arrays for ``model.gauss_params`` (see the module docstring for the per-tensor policy)."""
    arrays: Dict[str, EncodedArray] = {}
    for name, param in model.gauss_params.items():
        if name in GEOMETRY:
            arrays[name] = EncodedArray.raw(param.detach().float().cpu())
        elif name == "features_rest":
            arrays[name] = step_quantize(param, config.sh_step)
        elif name == "features_dc":
            arrays[name] = step_quantize(param, config.dc_step)
        else:
            arrays[name] = step_quantize(param, config.temporal_step)
    return arrays


def save_compact(model: NGSplatModel, path: Union[str, Path], config: Optional[DynamicCodecConfig] = None) -> int:
    """Write ``model``'s Gaussians to ``path`` (default quantisation steps unless ``config``); returns the bytes."""
    config = config or DynamicCodecConfig()
    meta = {
        "format": FORMAT, "model": type(model).__name__, "num_gaussians": int(model.gauss_params["means"].shape[0]),
        "sh_degree": int(model.config.sh_degree), "step": int(model.step),
    }
    return write_container(path, encode_gaussians(model, config), meta=meta)


def read_compact(path: Union[str, Path]) -> Tuple[Dict[str, Tensor], dict]:
    """Decode a compact file: ``(gauss_params name -> float32 tensor, metadata)``."""
    arrays, meta = read_container(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a dynamic-Gaussians compact file (format {meta.get('format')!r})")
    return {name: decode(encoded) for name, encoded in arrays.items()}, meta


@torch.no_grad()
def load_compact(model: NGSplatModel, path: Union[str, Path]) -> dict:
    """Replace ``model``'s Gaussians with the decoded ones (same parameter names; the count may differ)."""
    tensors, meta = read_compact(path)
    missing = set(model.gauss_params.keys()) ^ set(tensors.keys())
    if missing:
        raise ValueError(f"{path}: parameters do not match the model ({sorted(missing)})")
    for name, value in tensors.items():
        model.gauss_params[name] = torch.nn.Parameter(value.to(model.device))
    for key, value in list(model.strategy_state.items()):  # running statistics of the old Gaussians are void
        if isinstance(value, Tensor):
            model.strategy_state[key] = None
    model.step = meta.get("step", model.step)
    return meta
