"""4D-Rotor GS regularisers: opacity entropy and 4D kNN velocity consistency (official weights in the model config).

- Entropy: ``mean(-o log o)`` over the Gaussians visible in the rendered view plus ``invisible_weight`` times the
  same over the others (opacities clamped to [1e-3, 1 - 1e-3]), pushing opacities towards 0 or 1.
- Consistency: for each visible Gaussian, its 8 nearest neighbours in (x, y, z, time_scale * t) (itself and exact
  duplicates excluded) should move alike: ``|mean of the neighbours' velocities - own velocity|_1 * (K - 1) / K``,
  averaged over the Gaussians that have a neighbour. The neighbour search is not differentiated.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ng_methods.splat.knn import nearest_neighbours

__all__ = ["opacity_entropy_loss", "velocity_consistency_loss"]

DUPLICATE_DIST2 = 1e-7
"""Squared distance under which a neighbour counts as the point itself (the official mask)."""


def opacity_entropy_loss(
    opacities: Float[Tensor, "N"], visible: Bool[Tensor, "N"], invisible_weight: float = 0.01
) -> Float[Tensor, ""]:
    """``mean(-o log o | visible) + invisible_weight * mean(-o log o | not visible)``, empty sets counting 0."""
    clipped = opacities.clamp(1e-3, 1 - 1e-3)
    entropy = -clipped * torch.log(clipped)
    loss = opacities.new_zeros(())
    if visible.any():
        loss = loss + entropy[visible].mean()
    if (~visible).any():
        loss = loss + invisible_weight * entropy[~visible].mean()
    return loss


def velocity_consistency_loss(
    means: Float[Tensor, "N 3"],
    times: Float[Tensor, "N"],
    velocities: Float[Tensor, "N 3"],
    num_neighbours: int = 8,
    time_scale: float = 5.0,
) -> Float[Tensor, ""]:
    """The 4D consistency loss (unweighted) over the given Gaussians (pass the visible ones)."""
    if means.shape[0] < 2:
        return velocities.sum() * 0.0
    points = torch.cat([means.detach(), times.detach()[:, None] * time_scale], dim=-1)
    dist2, idx = nearest_neighbours(points, num_neighbours)
    k = idx.shape[1]
    valid = (dist2 > DUPLICATE_DIST2).to(velocities.dtype)  # [N, k]
    count = valid.sum(dim=1, keepdim=True)
    neighbour_mean = (velocities[idx] * valid[..., None]).sum(dim=1) / (count + 1e-7)
    per_point = (neighbour_mean - velocities).abs().sum(dim=-1) * (k - 1) / k
    has_neighbour = (count[:, 0] > 0).to(velocities.dtype)
    return (per_point * has_neighbour).sum() / (has_neighbour.sum() + 1e-7)
