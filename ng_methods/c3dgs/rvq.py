"""Residual vector quantisation (R-VQ) of per-Gaussian attributes, as C3DGS applies it to scale and rotation.

Stage ``s`` quantises the residual left by stages ``0..s-1`` to the nearest of ``codebook_size`` codes; the
attribute is the sum of the chosen codes, so each Gaussian stores ``num_stages`` indices of
``log2(codebook_size)`` bits. Codebooks start from k-means on the residuals of the current attributes (the
official code: ``kmeans_init=True, kmeans_iters=1``).

Gradients (training): the quantised output is ``q + (x - sg(x))``: its value is the sum of codes ``q``, the
input ``x`` receives the output gradient unchanged (straight-through) and each code receives the summed gradient
of the Gaussians that chose it, so the codebooks are learnt by the optimiser (their own parameter group).
"""

from __future__ import annotations

from typing import Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


def nearest_code(points: Float[Tensor, "n d"], codebook: Float[Tensor, "k d"]) -> Int[Tensor, "n"]:
    """Index of the nearest code (Euclidean) for every point."""
    return torch.cdist(points, codebook).argmin(dim=-1)


def kmeans(points: Float[Tensor, "n d"], num_clusters: int, iterations: int,
           generator: torch.Generator | None = None) -> Float[Tensor, "k d"]:
    """Lloyd's k-means from ``num_clusters`` distinct random points (repeated when there are fewer points)."""
    n = points.shape[0]
    if n == 0:
        return torch.zeros(num_clusters, points.shape[1], dtype=points.dtype, device=points.device)
    if n >= num_clusters:
        start = torch.randperm(n, generator=generator)[:num_clusters]
    else:
        start = torch.randint(n, (num_clusters,), generator=generator)
    centres = points[start.to(points.device)].clone()
    for _ in range(iterations):
        assignment = nearest_code(points, centres)
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=num_clusters).to(points.dtype)[:, None]
        # an empty cluster keeps its centre instead of collapsing to the origin
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return centres


class ResidualVectorQuantizer(nn.Module):
    """``num_stages`` residual stages of ``codebook_size`` codes for ``dim``-dimensional vectors.

    ``codebooks`` is a ``[num_stages, codebook_size, dim]`` parameter; ``initialized`` records whether k-means has
    set it (a checkpoint keeps both).
    """

    def __init__(self, dim: int, num_stages: int = 6, codebook_size: int = 64) -> None:
        super().__init__()
        self.codebooks = nn.Parameter(torch.zeros(num_stages, codebook_size, dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @property
    def num_stages(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @torch.no_grad()
    def initialize(self, values: Float[Tensor, "n dim"], kmeans_iterations: int = 1, seed: int = 0) -> None:
        """Fit every stage's codebook by k-means to the residual the previous stages leave."""
        generator = torch.Generator().manual_seed(seed)
        residual = values.detach().float()
        for stage in range(self.num_stages):
            codebook = kmeans(residual, self.codebook_size, kmeans_iterations, generator)
            self.codebooks.data[stage] = codebook.to(self.codebooks.dtype)
            residual = residual - codebook[nearest_code(residual, codebook)]
        self.initialized.fill_(True)

    def encode(self, values: Float[Tensor, "n dim"]) -> Int[Tensor, "n num_stages"]:
        """Greedy residual assignment: stage by stage, the code nearest to what is left."""
        residual = values.detach()
        codebooks = self.codebooks.detach()
        indices = []
        for stage in range(self.num_stages):
            index = nearest_code(residual, codebooks[stage])
            residual = residual - codebooks[stage][index]
            indices.append(index)
        if not indices:
            return torch.zeros(values.shape[0], 0, dtype=torch.long, device=values.device)
        return torch.stack(indices, dim=-1)

    def decode(self, indices: Int[Tensor, "n num_stages"]) -> Float[Tensor, "n dim"]:
        """Sum of the indexed codes (differentiable with respect to the codebooks)."""
        stages = torch.arange(self.num_stages, device=indices.device)
        return self.codebooks[stages[None, :], indices.long()].sum(dim=1)

    def forward(self, values: Float[Tensor, "n dim"]) -> Tuple[Float[Tensor, "n dim"], Int[Tensor, "n num_stages"]]:
        """Quantised values (straight-through to ``values``, learnable codes) and the stored indices."""
        indices = self.encode(values)
        quantized = self.decode(indices)
        return quantized + (values - values.detach()), indices
