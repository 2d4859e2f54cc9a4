"""D3DGS's trajectory-parameter regularisers used by some released Gaussian-Flow scene recipes.

Both read the canonical Gaussians and their DDDM coefficients (Linyou/D3DGS ``d3dgs_poly`` @4030d65,
``scene/gaussian_model.py``):

* the **parameter-KNN loss** (``knn_losses``, gm:326-346; ``train.py:248-250``: weight 0.1, only after
  ``densify_until_iter``): each Gaussian's position and rotation trajectory coefficients stay close to those of its
  ``K = 20`` neighbours, with neighbours ranked by ``| |x_i|^2 - |x_j|^2 |`` (the difference of squared distances
  from the origin, not the Euclidean distance; gm:279-307) and weighted ``1 - 0.5 d / max_k d``;
* the **moving loss** (``moving_loss``, gm:362-366; ``train.py:252-254``: weight 1, every step):
  ``mean |position coefficients| + mean |rotation coefficients|``, a sparsity prior on motion.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor


@torch.no_grad()
def squared_norm_neighbours(
    means: Float[Tensor, "N 3"], k: int = 20
) -> Tuple[Float[Tensor, "N K"], Int[Tensor, "N K"]]:
    """D3DGS's ``get_knn_index``: the ``k`` Gaussians closest in ``|x|^2`` (self included) and their weights.

    The distance ``| |x_i|^2 - |x_j|^2 |`` is one-dimensional, so after sorting the squared norms the ``k`` nearest
    of a point lie within ``k - 1`` sorted positions on either side; we search that window instead of D3DGS's
    chunked ``N x N`` table (same neighbours up to the order of exact ties).

    Returns:
        ``(weights, indices)``, both ``[N, K]`` with ``K = min(k, N)``, nearest first; weights are
        ``1 - 0.5 d / max_k d`` (1 for every neighbour of a row whose distances are all 0).

    Example:
        >>> weights, idx = squared_norm_neighbours(torch.randn(1000, 3), k=20)
    """
    n = means.shape[0]
    k = min(k, n)
    norms = means.double().pow(2).sum(-1)
    order = torch.argsort(norms)
    sorted_norms = norms[order]
    width = min(2 * k - 1, n)
    rank = torch.arange(n, device=means.device)
    start = (rank - (k - 1)).clamp(0, n - width)  # shifted at the ends so every window holds `width` points
    window = start[:, None] + torch.arange(width, device=means.device)[None, :]  # sorted positions [N, width]
    distances = (sorted_norms[window] - sorted_norms[:, None]).abs()
    nearest, pick = torch.topk(distances, k, dim=-1, largest=False)
    indices = torch.empty(n, k, dtype=torch.long, device=means.device)
    indices[order] = order[torch.gather(window, 1, pick)]
    row_max = nearest.max(dim=-1, keepdim=True).values
    weights = torch.ones_like(nearest)
    weights = torch.where(row_max > 0, 1.0 - 0.5 * nearest / row_max.clamp(min=1e-300), weights)
    result = torch.empty_like(weights)
    result[order] = weights
    return result.to(means.dtype), indices


def parameter_knn_loss(
    coefficients: Sequence[Float[Tensor, "N ..."]], neighbours: Int[Tensor, "N K"], weights: Float[Tensor, "N K"]
) -> Float[Tensor, ""]:
    """``mean_{i,k} w_ik * sum_c mean_p |c_{j_ik,p} - c_{i,p}|`` over the trajectory tensors ``c`` (D3DGS ``knn_losses``).

    Each tensor's per-Gaussian coefficients are flattened; the mean over ``p`` is per tensor, then the tensors'
    terms are summed, weighted and averaged over Gaussians and neighbours. Gradients reach both ends of every pair.
    """
    total = weights.new_zeros(weights.shape)
    for tensor in coefficients:
        flat = tensor.reshape(tensor.shape[0], -1)
        total = total + (flat[neighbours] - flat[:, None, :]).abs().mean(-1)
    return (total * weights).mean()


def moving_loss(coefficients: Sequence[Float[Tensor, "N ..."]]) -> Float[Tensor, ""]:
    """D3DGS ``moving_loss``: the sum over trajectory tensors of ``mean |coefficient|``."""
    return sum(tensor.abs().mean() for tensor in coefficients)
