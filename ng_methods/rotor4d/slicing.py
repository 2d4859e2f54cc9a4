"""Slicing 4D Gaussians at a time ``t``: the 3D Gaussian of each 4D one conditioned on ``t``.

With the 4D covariance ``S = R D D^T R^T`` (``R`` from the rotor, ``D = diag(sx, sy, sz, st)``) split into the
spatial block ``S_xx`` (3x3), the space-time column ``S_xt`` (3) and the time variance ``S_tt``, conditioning on
``t`` gives (the Gaussian conditional / Schur complement):

- mean ``mu_xyz + v (t - mu_t)`` with velocity ``v = S_xt / S_tt``;
- covariance ``S_xx - S_xt S_xt^T / S_tt`` (independent of ``t``);
- the marginal density in time scales the opacity: ``alpha = sigmoid(o) exp(-0.5 (t - mu_t)^2 / S_tt)``.

Gaussians whose temporal falloff exponent ``0.5 (t - mu_t)^2 / S_tt`` reaches :data:`TEMPORAL_CULL_EXPONENT`
(``exp(-16)`` ~ 1e-7 of their opacity) are culled before rasterisation, as in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ng_methods.rotor4d.rotor import rotor_to_rotation

__all__ = ["TEMPORAL_CULL_EXPONENT", "SlicedGaussians", "covariance_4d", "slice_gaussians", "temporal_exponent"]

TEMPORAL_CULL_EXPONENT = 16.0
"""Official threshold on ``0.5 (t - mu_t)^2 / S_tt`` above which a Gaussian is not rendered at ``t``."""


@dataclass
class SlicedGaussians:
    """4D Gaussians conditioned on one time (all Gaussians, not yet culled; ``visible`` says which to render)."""

    means: Float[Tensor, "N 3"]
    covars: Float[Tensor, "N 3 3"]
    velocities: Float[Tensor, "N 3"]
    """``S_xt / S_tt``: how fast the sliced mean moves with t (what the 4D consistency loss smooths)."""
    opacities: Float[Tensor, "N"]
    """Opacity times the temporal falloff."""
    visible: Bool[Tensor, "N"]
    """Temporal falloff exponent below :data:`TEMPORAL_CULL_EXPONENT`."""


def covariance_4d(
    scales: Float[Tensor, "N 4"], rotors: Float[Tensor, "N 8"]
) -> Float[Tensor, "N 4 4"]:
    """``R D D^T R^T``: ``R = rotor_to_rotation(rotors)`` (unnormalised), ``D = diag(sx, sy, sz, st)`` (linear)."""
    transform = rotor_to_rotation(rotors) * scales[:, None, :]  # R @ diag(scales)
    return transform @ transform.transpose(-1, -2)


def temporal_exponent(
    times: Float[Tensor, "N"], time_variance: Float[Tensor, "N"], t: float | Tensor
) -> Float[Tensor, "N"]:
    """``0.5 (t - mu_t)^2 / S_tt``: minus the log of the temporal opacity factor."""
    delta = t - times
    return 0.5 * delta * delta / time_variance


def slice_gaussians(
    means: Float[Tensor, "N 3"],
    times: Float[Tensor, "N"],
    scales: Float[Tensor, "N 4"],
    rotors: Float[Tensor, "N 8"],
    opacities: Float[Tensor, "N"],
    t: float | Tensor,
    cull_exponent: float = TEMPORAL_CULL_EXPONENT,
) -> SlicedGaussians:
    """Condition 4D Gaussians on time ``t``.

    Args:
        means: spatial centres ``mu_xyz``.  times: temporal centres ``mu_t``.
        scales: linear 4D scales ``(sx, sy, sz, st)``.  rotors: unnormalised rotors (see :mod:`.rotor`).
        opacities: activated opacities in [0, 1].
        t: the time to slice at.
        cull_exponent: Gaussians with ``0.5 (t - mu_t)^2 / S_tt >= cull_exponent`` are marked not visible.
    """
    sigma = covariance_4d(scales, rotors)
    sigma_xt = sigma[:, :3, 3]
    sigma_tt = sigma[:, 3, 3]
    velocities = sigma_xt / sigma_tt[:, None]
    covars = sigma[:, :3, :3] - velocities[:, :, None] * sigma_xt[:, None, :]
    sliced_means = means + velocities * (t - times)[:, None]
    exponent = temporal_exponent(times, sigma_tt, t)
    return SlicedGaussians(
        means=sliced_means,
        covars=covars,
        velocities=velocities,
        opacities=opacities * torch.exp(-exponent),
        visible=exponent < cull_exponent,
    )
