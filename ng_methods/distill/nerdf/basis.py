"""NeRDF's radiance distribution along a ray: a 24-term trigonometric basis on normalised depth t in [0, 1].

The network predicts, per ray, coefficients ``w[k, c]`` for basis term ``k`` and channel ``c``; the value of
channel ``c`` at depth t is ``sum_k w[k, c] * phi_k(t)``. The official code (yushuang-wu/NeRDF @45546129,
``utils/fourier_triangle.py:13-16``) uses ``phi_k(t) = cos(k pi t)`` for even k and ``sin((k + 1) pi t)`` for odd
k, i.e. {1, sin 2pi t, cos 2pi t, sin 4pi t, cos 4pi t, ...}: a Fourier series of period 1 in t.

The network's 288 outputs are read as [24 terms, 12 channels] (``utils/gauss_lib.py:99``, ``raw.view(n, 24, -1)``);
in the ``dft`` mode the density is channel 0 and the colour channels 1-3 (``gauss_lib.py:159-162``).

:func:`gaussian_mixture_density` is the *other* parameterisation the official ``get_sigma()`` always uses for the
density constraint (``gauss_lib.py:203-227`` calls ``gauss_zvals`` whatever ``gauss_type`` is): a mixture of 24
Gaussians whose mean, deviation and weight are channels 0, 1 and 2. See ``docs/nerdf.md``.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

NUM_TERMS = 24
"""Basis terms per channel (``N_gauss = 24`` in ``configs/*_nerdf.txt``)."""
NUM_CHANNELS = 12
"""Channels per term in the network output (``output_ch = N_gauss * 3 * 4``, ``nerdf_llff.py:216``)."""


def trig_basis(t: Float[Tensor, "*batch samples"], num_terms: int = NUM_TERMS) -> Float[Tensor, "*batch samples terms"]:
    """The official basis at normalised depths ``t`` (0 = near, 1 = far).

    Term k is ``cos(k pi t)`` for even k and ``sin((k + 1) pi t)`` for odd k, so the angular frequency of terms
    2j - 1 and 2j is 2 j pi.

    >>> trig_basis(torch.tensor([0.25]), 4).round(decimals=6).abs().tolist()  # cos 0, sin(pi/2), cos(pi/2), sin(pi)
    [[1.0, 1.0, 0.0, 0.0]]
    """
    k = torch.arange(num_terms, device=t.device, dtype=t.dtype)
    odd = k.remainder(2) == 1
    frequency = torch.where(odd, k + 1.0, k) * math.pi
    angle = t[..., None] * frequency
    return torch.where(odd, torch.sin(angle), torch.cos(angle))


def evaluate_basis(
    coefficients: Float[Tensor, "rays terms channels"], t: Float[Tensor, "rays samples"]
) -> Float[Tensor, "rays samples channels"]:
    """``sum_k coefficients[r, k, c] * phi_k(t[r, s])``: every channel of every ray at its samples."""
    basis = trig_basis(t, coefficients.shape[1])
    return torch.einsum("rsk,rkc->rsc", basis, coefficients)


def gaussian_mixture_density(
    coefficients: Float[Tensor, "rays terms channels"], t: Float[Tensor, "rays samples"]
) -> Float[Tensor, "rays samples"]:
    """The official ``gauss_zvals(0, ...)`` density: ``sum_k w_k N(t; mu_k, dev_k)`` with ``mu = sigmoid(ch 0)``,
    ``dev = sigmoid(ch 1)``, ``w = ch 2``, including the official 1e-6 stabilisers (``gauss_lib.py:69-88``)."""
    mean = torch.sigmoid(coefficients[:, None, :, 0])
    deviation = torch.sigmoid(coefficients[:, None, :, 1])
    weight = coefficients[:, None, :, 2]
    exponent = -((t[..., None] - mean) ** 2) / (2.0 * deviation**2 + 1e-6)
    gaussian = torch.exp(exponent) / (math.sqrt(2.0 * math.pi) * deviation + 1e-6)
    return (weight * gaussian).sum(-1)
