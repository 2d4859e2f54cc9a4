"""Gaussian-Flow's Dual-Domain Deformation Model (DDDM): a polynomial plus Fourier residual per attribute dimension.

For one attribute ``S`` of one Gaussian (position, rotation or colour DC) at mapped time ``t``::

    S(t) = S0 + (1/L) * sum_{l=0}^{L-1} [a_l * t^l + b_l * sin(2*pi*l*t) + c_l * cos(2*pi*l*t)]

The coefficients ``(a_l, b_l, c_l)`` are stored as ``[N, L, dim, 3]`` and zero-initialised, so an untrained
model is static. The released code (Linyou/polyfourier, a Taichi kernel) evaluates the same sum and divides by the
configured ``L``; here it is plain vectorised PyTorch, and autograd gives the derivative with respect to the time
that the released Taichi backward also computes (the chain rule of the ``t^l``, sine and cosine terms).

Time mapping (D3DGS ``d3dgs_poly``): ``t' = t * time_scale + time_offset - tau_i`` with the dataset time
``t`` in [0, 1] and a learnable per-Gaussian offset ``tau_i`` (``time_center`` in the Pointrix port).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor


def dddm_basis(t: Float[Tensor, "N"], order: int) -> Float[Tensor, "N L 3"]:
    """The basis ``(t^l, sin(2*pi*l*t), cos(2*pi*l*t))`` for ``l = 0..order-1``, already divided by ``order``.

    ``t^0`` is 1 (also at ``t = 0``), so ``a_0 + c_0`` is a constant offset of the attribute.
    """
    if order < 1:
        raise ValueError(f"DDDM order must be >= 1, got {order}")
    degrees = torch.arange(order, device=t.device, dtype=t.dtype)
    t_col = t[:, None]
    # t ** 0 is 1 even for t == 0 in torch.pow, matching ti.pow in the released kernel
    poly = torch.pow(t_col, degrees)
    phase = 2.0 * math.pi * degrees * t_col
    return torch.stack([poly, torch.sin(phase), torch.cos(phase)], dim=-1) / order


def dddm_residual(coefficients: Float[Tensor, "N L D 3"], t: Float[Tensor, "N"]) -> Float[Tensor, "N D"]:
    """The DDDM residual ``(1/L) sum_l [a_l t^l + b_l sin(2 pi l t) + c_l cos(2 pi l t)]`` per Gaussian and dimension.

    Args:
        coefficients: ``[N, L, D, 3]`` with the last axis ``(a, b, c)`` (polynomial, sine, cosine).
        t: mapped times ``[N]`` (one per Gaussian: the per-Gaussian offset makes them differ).

    Example:
        >>> dddm_residual(torch.zeros(5, 4, 3, 3), torch.rand(5))  # zero-initialised: no motion
    """
    basis = dddm_basis(t, coefficients.shape[1])
    return torch.einsum("nldk,nlk->nd", coefficients, basis)


def map_time(
    time: Float[Tensor, "*batch"],
    time_offsets: Float[Tensor, "N 1"],
    time_scale: float,
    time_shift: float,
    noise_std: float = 0.0,
    generator: Optional[torch.Generator] = None,
) -> Float[Tensor, "N"]:
    """Per-Gaussian mapped time ``t' = t * time_scale + time_shift - tau_i (+ noise)`` for one camera time.

    Args:
        time: the camera's normalised time (any shape with one element).
        time_offsets: the learnable per-Gaussian offsets ``tau`` ``[N, 1]``.
        time_scale, time_shift: the global rescaling ``s`` and offset ``o`` of the released configs.
        noise_std: standard deviation of Gaussian noise added to the (shared) time; the released code anneals it
            during training and it is off by default.
    """
    t = time.reshape(()).to(time_offsets) * time_scale + time_shift
    if noise_std > 0.0:
        t = t + noise_std * torch.randn((), device=t.device, dtype=t.dtype, generator=generator)
    return t - time_offsets[:, 0]
