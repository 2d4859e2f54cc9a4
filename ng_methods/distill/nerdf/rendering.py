"""Volume rendering of the student's per-sample densities and colours, as the official ``MYraw2outputs``
(``utils/gauss_lib.py:142-200``): ReLU density (after the training noise), the last interval 1e10 long, interval
lengths scaled by the length of the (NDC or world) ray direction, and NeRF's ``1 - alpha + 1e-10`` transmittance.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from jaxtyping import Float
from torch import Tensor

LAST_INTERVAL = 1e10
"""Length given to the interval after the last sample (vanilla NeRF)."""


class Composite(NamedTuple):
    """What :func:`composite` returns."""

    rgb: Float[Tensor, "rays 3"]
    """Composited colour (no background)."""
    accumulation: Float[Tensor, "rays 1"]
    """Sum of the weights."""
    weights: Float[Tensor, "rays samples"]
    """Per-sample weights."""


def sample_depths(num_rays: int, num_samples: int, stratified: bool, device: torch.device,
                  generator: Optional[torch.Generator] = None) -> Float[Tensor, "rays samples"]:
    """Normalised depths in [0, 1]: ``linspace(0, 1)``, jittered within the midpoints when ``stratified``
    (the official ``perturb_rays``, ``nerdf_llff.py:304-320``)."""
    t = torch.linspace(0.0, 1.0, num_samples, device=device).expand(num_rays, num_samples)
    if not stratified or num_samples < 2:
        return t
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    upper = torch.cat([mids, t[:, -1:]], dim=-1)
    lower = torch.cat([t[:, :1], mids], dim=-1)
    jitter = torch.rand(t.shape, device=device, generator=generator)
    return lower + (upper - lower) * jitter


def composite(
    density: Float[Tensor, "rays samples"], rgb: Float[Tensor, "rays samples 3"],
    depths: Float[Tensor, "rays samples"], direction_norm: Float[Tensor, "rays 1"], noise_std: float = 0.0,
) -> Composite:
    """Alpha-composite raw densities (ReLU applied here) and colours at ``depths`` along rays.

    Args:
        density: raw density per sample (before ReLU).
        rgb: colour per sample in [0, 1].
        depths: sample depths in the units of ``direction_norm`` (NDC t, or world distance with norm 1).
        direction_norm: length of each ray's direction (interval lengths are multiplied by it).
        noise_std: standard deviation of Gaussian noise added to the raw density (training regulariser).
    """
    intervals = depths[:, 1:] - depths[:, :-1]
    intervals = torch.cat([intervals, torch.full_like(intervals[:, :1], LAST_INTERVAL)], dim=-1) * direction_norm
    if noise_std > 0.0:
        density = density + torch.randn_like(density) * noise_std
    alpha = 1.0 - torch.exp(-torch.relu(density) * intervals)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], dim=-1), dim=-1)
    weights = alpha * transmittance[:, :-1]
    return Composite(rgb=(weights[..., None] * rgb).sum(-2), accumulation=weights.sum(-1, keepdim=True),
                     weights=weights)
