"""Twice-differentiable backward of the fused grid encoding + ReLU MLP (eikonal losses on ``triton``).

When the backward of ``encode_and_mlp(..., backend="triton")`` runs with ``create_graph=True`` (e.g. ``d sdf / dx``
for an eikonal loss), the fused backward kernel cannot be used: its outputs would be constants. Instead the first-order
gradients are assembled from differentiable pieces, so that autograd differentiates them once more:

* the encoding is recomputed with the grid's Triton forward (``grid_encode_triton``);
* the MLP's forward and its backward are plain torch matmuls on the recomputed activations (``[n, <=256]`` tiles, a
  few small GEMMs: cuBLAS is as good as a hand-written kernel here, and autograd derives their second-order terms,
  which are products of the saved ReLU masks and the weights, since ReLU'' = 0);
* the encoding cotangent goes through ``grid_encode_backward_triton``, whose backward is the grid's Triton double
  backward (``grid_encoding/triton_second_order.py``): d/dtable of the eikonal is a Triton scatter, d/d(cotangent) a
  Triton gather.

The arithmetic is the reference's (``encode_and_mlp_reference``): each layer's input is rounded to the weight dtype
and multiplied in float32; a point with a NaN encoding gets no gradient. On a GPU these matmuls follow torch's
``allow_tf32`` setting (full fp32 by default), whereas the fused first-order kernel uses ``FP32_DOT_PRECISION``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ng_methods.kernels.grid_encoding.spec import GridSpec
from ng_methods.kernels.grid_encoding.triton import grid_encode_backward_triton, grid_encode_triton

__all__ = ["encode_and_mlp_backward_differentiable"]


def _mlp_forward(encoded: Tensor, weights: Sequence[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
    """Each layer's (weight-dtype-rounded, float32) input and each hidden layer's pre-activation."""
    inputs, pre_activations = [], []
    x = encoded
    for index, weight in enumerate(weights):
        inputs.append(x.to(weight.dtype).to(torch.float32))
        if index < len(weights) - 1:
            pre_activations.append(inputs[-1] @ weight.to(torch.float32).T)
            x = torch.relu(pre_activations[-1])
    return inputs, pre_activations


def encode_and_mlp_backward_differentiable(
    positions: Float[Tensor, "n d"],
    table: Float[Tensor, "n_params f"],
    spec: GridSpec,
    weights: Sequence[Float[Tensor, "out in"]],
    grad_out: Float[Tensor, "n out"],
    positions_grad: bool,
    table_grad: bool,
) -> Tuple[Optional[Tensor], Optional[Tensor], List[Tensor]]:
    """``(d positions, d table, [d weight])`` for the cotangent ``grad_out``, differentiable w.r.t. every input.

    Same contract as ``triton.encode_and_mlp_backward`` (position gradient float32, table gradient in the table
    dtype, weight gradients in the weight dtype; None where not requested), built from differentiable pieces (see
    the module docstring). Call it with grad mode on for a twice-differentiable result.
    """
    encoded = grid_encode_triton(positions, table, spec).to(torch.float32)
    bad = encoded.isnan().any(dim=1, keepdim=True)  # NaN outputs that add nothing to any gradient
    inputs, pre_activations = _mlp_forward(torch.where(bad, 0.0, encoded), weights)
    grad = torch.where(bad, 0.0, grad_out.to(torch.float32))
    grad_weights: List[Tensor] = [grad_out] * len(weights)  # placeholders, all overwritten below
    for index in reversed(range(len(weights))):
        grad_weights[index] = (grad.T @ inputs[index]).to(weights[index].dtype)
        grad = grad @ weights[index].to(torch.float32)
        if index > 0:  # ReLU' = (pre-activation > 0), a constant mask: ReLU'' = 0
            grad = torch.where(pre_activations[index - 1] > 0, grad, 0.0)
    if not (positions_grad or table_grad):
        return None, None, grad_weights
    grad_positions, grad_table = grid_encode_backward_triton(
        grad.to(table.dtype), positions, table, spec, need_positions=positions_grad, need_table=table_grad
    )
    return grad_positions, grad_table, grad_weights
