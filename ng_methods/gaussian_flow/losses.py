"""Gaussian-Flow's optional regularisers: temporal smoothness and KNN rigidity.

Both are **disabled in the released configurations** (D3DGS ``d3dgs_poly`` arguments and the Pointrix port's
``dnerf.yaml`` train with the photometric loss only; the Pointrix port even calls ``knn_loss()`` without its time
argument). We implement them as described in the paper and keep their weights at 0 by default.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def temporal_smoothness_loss(
    deformed_now: Float[Tensor, "N D"], deformed_later: Float[Tensor, "N D"]
) -> Float[Tensor, ""]:
    """``mean |D(t' + delta) - sg(D(t'))|``: the attribute at a slightly later time stays close to the current one.

    The current value is detached (stop-gradient) as in the paper, so only the later evaluation is pulled.
    """
    return torch.abs(deformed_later - deformed_now.detach()).mean()


def knn_indices(points: Float[Tensor, "N 3"], k: int, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest other points of each point: ``(squared distances [N, k], indices [N, k])`` (chunked cdist).

    D3DGS measures |‖x_i‖² − ‖x_j‖²| instead of the Euclidean distance; we use the Euclidean one (the paper's).
    """
    k = min(k, points.shape[0] - 1)
    dists, idx = [], []
    for start in range(0, points.shape[0], chunk):
        block = torch.cdist(points[start : start + chunk], points).pow(2)
        rows = torch.arange(block.shape[0], device=points.device)
        block[rows, rows + start] = float("inf")  # a point is not its own neighbour
        d, i = block.topk(k, dim=1, largest=False)
        dists.append(d)
        idx.append(i)
    return torch.cat(dists), torch.cat(idx)


def quaternion_to_matrix(quats: Float[Tensor, "N 4"]) -> Float[Tensor, "N 3 3"]:
    """Rotation matrices of (not necessarily unit) wxyz quaternions."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


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
    relative = quaternion_to_matrix(quats_a) @ quaternion_to_matrix(quats_b).transpose(-1, -2)  # R^-1 = R^T
    residual = offsets_a - torch.einsum("nij,nkj->nki", relative, offsets_b)
    return (weights[..., None] * residual.pow(2)).mean()
