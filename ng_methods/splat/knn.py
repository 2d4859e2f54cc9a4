"""Exact k-nearest neighbours by chunked pairwise distances (the splat methods' regularisers use it)."""

from __future__ import annotations

from typing import Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor


@torch.no_grad()
def nearest_neighbours(
    points: Float[Tensor, "N D"], k: int, exclude_self: bool = False, max_pairs_per_chunk: int = 1 << 26
) -> Tuple[Float[Tensor, "N k"], Int[Tensor, "N k"]]:
    """Squared distances and indices of the ``k`` nearest points of every point, nearest first.

    With ``exclude_self`` a point is never its own neighbour (then ``k <= N - 1``); otherwise it is its own first
    neighbour (``k <= N``). Rows are processed in chunks of at most ``max_pairs_per_chunk`` distances.

    Example:
        >>> sq_dists, idx = nearest_neighbours(torch.randn(1000, 3), k=8, exclude_self=True)
    """
    num = points.shape[0]
    k = min(k, num - 1 if exclude_self else num)
    chunk = max(1, max_pairs_per_chunk // max(num, 1))
    sq_dists, indices = [], []
    for start in range(0, num, chunk):
        block = torch.cdist(points[start : start + chunk], points).square()
        if exclude_self:
            rows = torch.arange(block.shape[0], device=points.device)
            block[rows, rows + start] = float("inf")
        values, idx = torch.topk(block, k, dim=1, largest=False)
        sq_dists.append(values)
        indices.append(idx)
    return torch.cat(sq_dists), torch.cat(indices)
