"""Encodings shared by the distillation students."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def embed_points(points: Float[Tensor, "*bs d"], frequencies: int) -> Float[Tensor, "*bs e"]:
    """``[sin(2^k x) for k], [cos(2^k x) for k], x`` per coordinate: ``d`` -> ``d * (2 * frequencies + 1)``."""
    weights = 2.0 ** torch.linspace(0, frequencies - 1, frequencies, device=points.device, dtype=points.dtype)
    scaled = points[..., None] * weights
    embedded = torch.cat([torch.sin(scaled), torch.cos(scaled), points[..., None]], dim=-1)
    return embedded.flatten(-2)
