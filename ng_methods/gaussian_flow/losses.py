"""Gaussian-Flow's optional regularisers: temporal smoothness and KNN rigidity.

Both are **disabled in the released configurations** (D3DGS ``d3dgs_poly`` arguments and the Pointrix port's
``dnerf.yaml`` train with the photometric loss only; the Pointrix port even calls ``knn_loss()`` without its time
argument). We implement them as described in the paper and keep their weights at 0 by default.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ng_methods.kernels.splat.reference import quat_to_rotmat


def temporal_smoothness_loss(
    deformed_now: Float[Tensor, "N D"], deformed_later: Float[Tensor, "N D"]
) -> Float[Tensor, ""]:
    """``mean |D(t' + delta) - sg(D(t'))|``: the attribute at a slightly later time stays close to the current one.

    The current value is detached (stop-gradient) as in the paper, so only the later evaluation is pulled.
    """
    return torch.abs(deformed_later - deformed_now.detach()).mean()


def knn_rigidity_loss(
    means_a: Float[Tensor, "N 3"],
    quats_a: Float[Tensor, "N 4"],
    means_b: Float[Tensor, "N 3"],
    quats_b: Float[Tensor, "N 4"],
    neighbours: Int[Tensor, "N K"],
    weights: Float[Tensor, "N K"],
) -> Float[Tensor, ""]:
    """Local rigidity between two times: neighbour offsets at ``a`` equal those at ``b`` rotated by ``R_a R_b^-1``.

    ``weights`` are ``exp(-theta * d^2)`` of the neighbour distances at time 0 (theta = 1e5 in the released code).
    """
    offsets_a = means_a[neighbours] - means_a[:, None, :]
    offsets_b = means_b[neighbours] - means_b[:, None, :]
    relative = quat_to_rotmat(quats_a) @ quat_to_rotmat(quats_b).transpose(-1, -2)  # R^-1 = R^T
    residual = offsets_a - torch.einsum("nij,nkj->nki", relative, offsets_b)
    return (weights[..., None] * residual.pow(2)).mean()
