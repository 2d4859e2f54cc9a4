"""Residual vector quantisation (R-VQ) of per-Gaussian attributes, as C3DGS applies it to scale and rotation.

Stage ``s`` quantises the residual left by stages ``0..s-1`` to the nearest of ``codebook_size`` codes; the
attribute is the sum of the chosen codes, so each Gaussian stores ``num_stages`` indices of
``log2(codebook_size)`` bits. Codebooks start from k-means on the residuals of the current attributes (the
official code: ``kmeans_init=True, kmeans_iters=1``).

Training (official code: ``vector_quantize_pytorch`` 1.8.1 ``ResidualVQ`` with ``learnable_codebook=True``,
``ema_update=False``, ``in_place_codebook_optimizer=Adam(lr=1e-4)``, ``commitment_weight=0``):

* codebooks are not trained by the rendering loss. In every training forward, stage by stage, the stage's codebook
  takes one Adam step (lr ``codebook_lr``, betas 0.9/0.999, eps 1e-8) on ``MSE(code[nearest], residual)`` (mean
  over the residual's elements), then the residual is re-assigned to the updated codes and the next stage sees
  what they leave (``VectorQuantize.forward``, "one step in-place update" then "quantize again");
* each stage's output is straight-through to its input residual, and the residuals pass gradients through, so the
  input receives ``num_stages`` times the output gradient (6x in C3DGS).

Outside training the output is the sum of the chosen codes (no update).
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

    ``codebooks`` is a ``[num_stages, codebook_size, dim]`` buffer (updated in place, see the module docstring);
    ``initialized`` records whether k-means has set it. A checkpoint keeps both and the in-place Adam state.
    """

    ADAM_BETAS = (0.9, 0.999)
    ADAM_EPS = 1e-8

    def __init__(self, dim: int, num_stages: int = 6, codebook_size: int = 64, codebook_lr: float = 1e-4) -> None:
        super().__init__()
        self.codebook_lr = codebook_lr
        self.register_buffer("codebooks", torch.zeros(num_stages, codebook_size, dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("adam_exp_avg", torch.zeros(num_stages, codebook_size, dim))
        self.register_buffer("adam_exp_avg_sq", torch.zeros(num_stages, codebook_size, dim))
        self.register_buffer("adam_steps", torch.zeros(num_stages))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        """Checkpoints written before the in-place update (codebooks as a parameter, no Adam state) still load."""
        for name in ("adam_exp_avg", "adam_exp_avg_sq", "adam_steps"):
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_stages(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @torch.no_grad()
    def initialize(self, values: Float[Tensor, "n dim"], kmeans_iterations: int = 1, seed: int = 0) -> None:
        """Fit every stage's codebook by k-means to the residual the previous stages leave (Adam state reset)."""
        generator = torch.Generator().manual_seed(seed)
        residual = values.detach().float()
        for stage in range(self.num_stages):
            codebook = kmeans(residual, self.codebook_size, kmeans_iterations, generator)
            self.codebooks[stage] = codebook.to(self.codebooks.dtype)
            residual = residual - codebook[nearest_code(residual, codebook)]
        for name in ("adam_exp_avg", "adam_exp_avg_sq", "adam_steps"):
            getattr(self, name).zero_()
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update_stage(self, stage: int, residual: Float[Tensor, "n dim"]) -> None:
        """One Adam step of stage ``stage`` on ``mean((code[nearest] - residual)^2)`` (torch ``Adam`` arithmetic)."""
        codebook = self.codebooks[stage]
        index = nearest_code(residual, codebook)
        grad = torch.zeros_like(codebook).index_add_(0, index, codebook[index] - residual)
        grad *= 2.0 / max(residual.numel(), 1)
        beta1, beta2 = self.ADAM_BETAS
        self.adam_steps[stage] += 1
        step = float(self.adam_steps[stage])
        exp_avg, exp_avg_sq = self.adam_exp_avg[stage], self.adam_exp_avg_sq[stage]
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / (1 - beta2 ** step) ** 0.5).add_(self.ADAM_EPS)
        codebook.addcdiv_(exp_avg, denom, value=-self.codebook_lr / (1 - beta1 ** step))

    def encode(self, values: Float[Tensor, "n dim"], update: bool = False) -> Int[Tensor, "n num_stages"]:
        """Greedy residual assignment: stage by stage, the code nearest to what is left (after the stage's
        in-place update when ``update``)."""
        residual = values.detach()
        indices = []
        for stage in range(self.num_stages):
            if update:
                self._update_stage(stage, residual)
            codebook = self.codebooks[stage]
            index = nearest_code(residual, codebook)
            residual = residual - codebook[index]
            indices.append(index)
        if not indices:
            return torch.zeros(values.shape[0], 0, dtype=torch.long, device=values.device)
        return torch.stack(indices, dim=-1)

    def decode(self, indices: Int[Tensor, "n num_stages"]) -> Float[Tensor, "n dim"]:
        """Sum of the indexed codes."""
        stages = torch.arange(self.num_stages, device=indices.device)
        return self.codebooks[stages[None, :], indices.long()].sum(dim=1)

    def forward(self, values: Float[Tensor, "n dim"], update: bool = False
                ) -> Tuple[Float[Tensor, "n dim"], Int[Tensor, "n num_stages"]]:
        """Quantised values (``num_stages`` x straight-through to ``values``) and the stored indices; ``update``
        takes the official in-place codebook step first (training)."""
        indices = self.encode(values, update=update)
        quantized = self.decode(indices)
        return quantized + self.num_stages * (values - values.detach()), indices
