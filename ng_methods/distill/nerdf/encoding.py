"""The student's per-ray input (``embedding_type = optsFreq_dSH``): 1135 numbers per ray.

Layout (official ``utils/input_emb.py:65-86``, sizes from ``input_ch_dict``, ``input_emb.py:167-171``):

1. **Points** (1008 = 16 points x 3 coordinates x 21): for each point and coordinate x,
   ``[sin(2^0 x), ..., sin(2^9 x), cos(2^0 x), ..., cos(2^9 x), x]`` (no factor pi; ``input_emb.py:66-72``).
2. **Ray origin** (63): the vanilla-NeRF embedder (``helpers.py:80-128``, ``multires_gs = 10``):
   ``[o, sin(2^0 o), cos(2^0 o), ..., sin(2^9 o), cos(2^9 o)]``, three numbers per entry.
3. **Direction** (64): real spherical harmonics of the unit viewing direction up to degree 7 (``embed_SH(dirs,
   degree=8)``, ``utils/spherical_harmonics.py:3-85``), with the Condon-Shortley sign convention of
   tiny-cuda-nn. The official table has a copy error that we replicate: entry 16 (l = 4, m = -4) repeats entry 15
   instead of ``2.5033 xy (x^2 - y^2)`` (the commented-out reference below it has the right polynomial).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from ng_methods.distill.encoding import embed_points

NUM_FREQUENCIES = 10
"""Frequencies of both frequency encodings (``L = 10``, ``multires_gs = 10``)."""
SH_DEGREE = 8
"""``embed_SH(dirs, degree=8)``: bands l = 0..7, 64 functions."""
NUM_SH = SH_DEGREE**2
ORIGIN_DIM = 3 * (1 + 2 * NUM_FREQUENCIES)


def points_dim(num_points: int) -> int:
    """Size of the point block for ``num_points`` points (1008 for 16)."""
    return num_points * 3 * (2 * NUM_FREQUENCIES + 1)


def input_dim(num_points: int) -> int:
    """Size of the whole student input (1135 for 16 points)."""
    return points_dim(num_points) + ORIGIN_DIM + NUM_SH


def encode_points(points: Float[Tensor, "rays points 3"]) -> Float[Tensor, "rays features"]:
    """Per coordinate: 10 sines, 10 cosines (frequencies 2^0..2^9, no pi), then the raw value; flattened per ray."""
    return embed_points(points, NUM_FREQUENCIES).reshape(points.shape[0], -1)


def encode_origin(origins: Float[Tensor, "rays 3"]) -> Float[Tensor, "rays 63"]:
    """The vanilla-NeRF embedder: the raw input, then sin and cos per frequency (interleaved per frequency)."""
    scales = 2.0 ** torch.arange(NUM_FREQUENCIES, device=origins.device, dtype=origins.dtype)
    scaled = origins[:, None, :] * scales[:, None]
    per_frequency = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=1)  # [rays, 2, L, 3] -> L-major
    per_frequency = per_frequency.permute(0, 2, 1, 3).reshape(origins.shape[0], -1)
    return torch.cat([origins, per_frequency], dim=-1)


def _legendre_factors(z: Tensor, degree: int) -> dict:
    """``Q[l, m](z) = P_l^m(z) / (1 - z^2)^(m/2)`` (Condon-Shortley phase included) for 0 <= m <= l < degree."""
    q = {}
    for m in range(degree):
        q[m, m] = torch.full_like(z, (-1.0) ** m * math.prod(range(1, 2 * m, 2)))
        if m + 1 < degree:
            q[m + 1, m] = (2 * m + 1) * z * q[m, m]
        for band in range(m + 2, degree):
            q[band, m] = ((2 * band - 1) * z * q[band - 1, m] - (band + m - 1) * q[band - 2, m]) / (band - m)
    return q


def spherical_harmonics(directions: Float[Tensor, "rays 3"], degree: int = SH_DEGREE) -> Float[Tensor, "rays n"]:
    """Real spherical harmonics (tiny-cuda-nn's order and signs) of unit ``directions``, bands 0..degree-1.

    Index ``l^2 + l + m``; for m > 0 the function is ``sqrt(2) K_l^m Q_l^m(z) Re((x + iy)^m)``, for m < 0 the same
    with ``Im``, for m = 0 ``K_l^0 Q_l^0(z)``, where ``K_l^m = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!)``.
    """
    x, y, z = directions.unbind(-1)
    q = _legendre_factors(z, degree)
    planar = [(torch.ones_like(x), torch.zeros_like(x))]  # Re and Im of (x + iy)^m
    for _ in range(1, degree):
        re, im = planar[-1]
        planar.append((re * x - im * y, re * y + im * x))
    columns = []
    for band in range(degree):
        for m in range(-band, band + 1):
            order = abs(m)
            norm = math.sqrt((2 * band + 1) / (4 * math.pi) * math.factorial(band - order)
                             / math.factorial(band + order))
            if m == 0:
                columns.append(norm * q[band, 0])
            else:
                columns.append(math.sqrt(2.0) * norm * q[band, order] * planar[order][0 if m > 0 else 1])
    return torch.stack(columns, dim=-1)


def encode_direction(directions: Float[Tensor, "rays 3"]) -> Float[Tensor, "rays 64"]:
    """The official 64-d direction encoding, with its entry 16 = entry 15 copy error (see the module docs)."""
    harmonics = spherical_harmonics(directions, SH_DEGREE)
    return torch.cat([harmonics[:, :16], harmonics[:, 15:16], harmonics[:, 17:]], dim=-1)


def encode_ray_input(
    points: Float[Tensor, "rays points 3"], origins: Float[Tensor, "rays 3"], directions: Float[Tensor, "rays 3"]
) -> Float[Tensor, "rays features"]:
    """The whole student input: point block, origin block, direction block (1135 numbers for 16 points)."""
    return torch.cat([encode_points(points), encode_origin(origins), encode_direction(directions)], dim=-1)
