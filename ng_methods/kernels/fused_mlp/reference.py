"""Pure-PyTorch spec of the fused grid encoding + tiny MLP: ``grid_encode_reference`` then a bias-free ReLU MLP.

This is what ``ng_methods.kernels.fused_mlp.triton`` is checked against, and the CPU path of ``encode_and_mlp``.
The MLP is ``TinyMLP``'s: ``Linear(bias=False)`` layers with ReLU between them and no output activation. Each layer
multiplies its input *rounded to that layer's weight dtype* by the weights, accumulating in float32 (float64 when the
table or a weight is float64): for float32 weights this is the plain MLP, for float16 weights it is what the Triton
kernel's fp16 ``tl.dot`` (fp32 accumulation) computes, up to summation order.
"""

from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ng_methods.kernels.grid_encoding.reference import check_grid_inputs, grid_encode_reference
from ng_methods.kernels.grid_encoding.spec import GridSpec


def check_mlp_weights(weights: Sequence[Tensor], in_dim: int, device: torch.device) -> None:
    """Raise ``ValueError`` unless ``weights`` are floating ``[out, in]`` matrices chaining ``in_dim`` -> ... -> out."""
    if len(weights) == 0:
        raise ValueError("weights must hold at least one [out, in] matrix")
    expected_in = in_dim
    for index, weight in enumerate(weights):
        if weight.ndim != 2 or weight.shape[1] != expected_in:
            raise ValueError(f"weights[{index}] must be [out, {expected_in}], got {tuple(weight.shape)}")
        if not weight.is_floating_point():
            raise ValueError(f"weights[{index}] must be floating point, got {weight.dtype}")
        if weight.device != device:
            raise ValueError(f"weights[{index}] is on {weight.device}, expected {device} like positions and table")
        expected_in = weight.shape[0]


def mlp_compute_dtype(table: Tensor, weights: Sequence[Tensor]) -> torch.dtype:
    """float64 if the table or any weight is float64, else float32: the accumulation and output dtype."""
    return torch.float64 if any(t.dtype == torch.float64 for t in (table, *weights)) else torch.float32


def encode_and_mlp_reference(
    positions: Float[Tensor, "n d"],
    table: Float[Tensor, "n_params f"],
    spec: GridSpec,
    weights: Sequence[Float[Tensor, "out in"]],
) -> Float[Tensor, "n out"]:
    """``mlp(grid_encode_reference(positions, table, spec))`` with a bias-free ReLU MLP given by ``weights``.

    Args:
        positions: ``[n, d]`` points, nominally in ``[0, 1]^d`` (outside it tcnn's uint32 indexing wraps).
        table: ``[spec.n_params, F]`` flat grid table.
        spec: grid hyper-parameters.
        weights: ``[out_i, in_i]`` matrices (``nn.Linear.weight`` layout), ``in_0 = L*F``, ``in_{i+1} = out_i``;
            ReLU after every layer but the last.

    Returns:
        ``[n, out]`` in float32 (float64 when the table or a weight is float64). Differentiable w.r.t. positions,
        table and weights. A point whose encoding has a NaN (a non-finite or float32-overflowing coordinate, see
        ``grid_encode_reference``) gets NaN outputs and adds nothing to any gradient (tiny-cuda-nn would spread the
        NaN into the table and weight gradients, i.e. to every other point).

    Example:
        >>> spec = GridSpec(n_levels=2, n_features_per_level=2, log2_hashmap_size=10, base_resolution=4)
        >>> table = torch.randn(spec.n_params, 2) * 1e-2
        >>> weights = [torch.randn(64, 4), torch.randn(16, 64)]
        >>> encode_and_mlp_reference(torch.rand(5, 3), table, spec, weights).shape
        torch.Size([5, 16])
    """
    check_grid_inputs(positions, table, spec)
    check_mlp_weights(weights, spec.n_output_dims, positions.device)
    compute = mlp_compute_dtype(table, weights)
    x = grid_encode_reference(positions, table, spec).to(compute)
    bad = x.isnan().any(dim=1, keepdim=True)  # NaN outputs that add nothing to any gradient
    x = torch.where(bad, 0.0, x)
    for index, weight in enumerate(weights):
        x = x.to(weight.dtype).to(compute) @ weight.to(compute).T
        if index < len(weights) - 1:
            x = torch.relu(x)
    return torch.where(bad, float("nan"), x)
