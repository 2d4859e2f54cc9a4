"""Fused multi-resolution grid encoding + tiny bias-free ReLU MLP, with backend dispatch.

``encode_and_mlp(positions, table, spec, weights)`` computes ``TinyMLP(grid_encode(positions, table, spec))`` with
the MLP given as its list of ``[out, in]`` weight matrices:

* ``torch``: ``encode_and_mlp_reference`` (any device/dtype, full autograd incl. double backward);
* ``triton``: ``ng_methods.kernels.fused_mlp.triton``: one forward launch and one backward launch (plus zero-fills),
  gradients to the table, every weight and (when they require grad) the positions. Twice differentiable: a backward
  with ``create_graph=True`` (e.g. ``d sdf / dx`` for an eikonal loss) is assembled from the grid's Triton kernels
  (whose double backward is Triton too) and torch matmuls for the tiny MLP (``triton_second_order.py``);
* ``auto``: ``triton`` for CUDA inputs when that module imports, else ``torch``.

Triton is imported on first use of the ``triton`` backend; nothing is compiled at import time.
"""

from __future__ import annotations

import functools
from typing import Literal, Optional, Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ng_methods.kernels.fused_mlp.reference import check_mlp_weights, encode_and_mlp_reference
from ng_methods.kernels.grid_encoding.reference import check_grid_inputs
from ng_methods.kernels.grid_encoding.spec import GridSpec

Backend = Literal["auto", "torch", "triton"]

__all__ = ["Backend", "encode_and_mlp", "encode_and_mlp_reference", "resolve_backend", "triton_available"]


@functools.lru_cache(maxsize=None)
def _load_triton() -> Tuple[Optional[object], Optional[str]]:
    """``(the triton module, None)`` or ``(None, why it is unavailable)``; imported once, on first use."""
    try:
        from ng_methods.kernels.fused_mlp import triton as kernels
    except Exception as error:  # no `triton`, or a Triton without a usable driver
        return None, f"{type(error).__name__}: {error}"
    return kernels, None


def triton_available() -> bool:
    """Whether ``ng_methods.kernels.fused_mlp.triton`` (and Triton itself) imports."""
    return _load_triton()[0] is not None


def resolve_backend(backend: Backend, device: torch.device | str) -> Literal["torch", "triton"]:
    """The backend ``encode_and_mlp`` runs for inputs on ``device``: ``auto`` becomes ``triton`` or ``torch``."""
    if backend in ("torch", "triton"):
        return backend
    if backend != "auto":
        raise ValueError(f"unknown fused-MLP backend {backend!r}; expected auto, torch or triton")
    return "triton" if torch.device(device).type == "cuda" and triton_available() else "torch"


class _EncodeAndMLP(torch.autograd.Function):
    """Autograd wrapper of the Triton kernels; the backward recomputes activations, so only inputs are saved.

    A plain backward runs the fused backward kernel. With grad mode on (``create_graph=True``) it runs the
    differentiable assembly of ``triton_second_order.py`` instead, so the gradients can be differentiated again.
    """

    @staticmethod
    def forward(ctx, positions: Tensor, table: Tensor, spec: GridSpec, *weights: Tensor) -> Tensor:
        kernels, _ = _load_triton()
        ctx.spec = spec
        ctx.save_for_backward(positions, table, *weights)  # the inputs themselves: double backward reaches them
        return kernels.encode_and_mlp_forward(positions, table, spec, weights)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        kernels, _ = _load_triton()
        positions, table, *weights = ctx.saved_tensors
        needs_positions, needs_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled():
            g_pos, g_table, g_weights = kernels.encode_and_mlp_backward_differentiable(
                positions, table, ctx.spec, weights, grad_out, needs_positions, needs_table
            )
        else:
            g_pos, g_table, g_weights = kernels.encode_and_mlp_backward(
                positions, table, ctx.spec, weights, grad_out, needs_positions, needs_table
            )
        if g_pos is not None:
            g_pos = g_pos.to(positions.dtype)
        return (g_pos, g_table, None, *g_weights)


def encode_and_mlp(
    positions: Float[Tensor, "n d"],
    table: Float[Tensor, "n_params f"],
    spec: GridSpec,
    weights: Sequence[Float[Tensor, "out in"]],
    backend: Backend = "auto",
) -> Float[Tensor, "n out"]:
    """``mlp(grid_encode(positions, table, spec))`` for a bias-free ReLU MLP, fused on the ``triton`` backend.

    Args:
        positions: ``[n, d]`` points, nominally in ``[0, 1]^d`` (outside it tcnn's uint32 indexing wraps).
        table: ``[spec.n_params, F]`` flat grid table (level ``l`` at rows ``spec.level_offsets()[l]:[l+1]``).
        spec: grid hyper-parameters (``triton``: ``n_dims`` 1..3).
        weights: the MLP's ``[out_i, in_i]`` matrices (``TinyMLP.layers[i].weight``), ``in_0 = L*F``, ReLU after
            every layer but the last (``triton``: 1-3 hidden layers of one width, all fp32 or all fp16).
        backend: ``auto``, ``torch`` or ``triton`` (see the module docstring).

    Returns:
        ``[n, out]`` float32 (float64 on the torch backend when the table or a weight is float64). Differentiable
        w.r.t. ``positions``, ``table`` and every weight, twice on every backend (``triton``: a third derivative
        raises; eikonal losses need two). Non-finite (or
        float32-overflowing) coordinates give that point NaN outputs and no gradient contribution, on every backend.

    On ``triton``, positions are read as float32 (like tcnn), the encoding is rounded to the table dtype, and fp32
    weights multiply with ``triton.FP32_DOT_PRECISION`` (TF32 tensor cores on a GPU: ~1e-3 relative error; full fp32
    under ``TRITON_INTERPRET=1``). Weight and table gradients are summed with atomics (not bitwise deterministic).

    Example:
        >>> from ng_methods.networks.tiny_mlp import TinyMLP
        >>> spec = GridSpec(n_levels=4, n_features_per_level=2, log2_hashmap_size=12, base_resolution=8)
        >>> table = (torch.rand(spec.n_params, 2) - 0.5) * 2e-4
        >>> mlp = TinyMLP(spec.n_output_dims, 16, hidden_dim=64, hidden_layers=1)
        >>> weights = [layer.weight for layer in mlp.layers]
        >>> encode_and_mlp(torch.rand(1000, 3), table, spec, weights).shape  # == mlp(grid_encode(...))
        torch.Size([1000, 16])
    """
    check_grid_inputs(positions, table, spec)
    check_mlp_weights(weights, spec.n_output_dims, positions.device)
    if resolve_backend(backend, positions.device) == "torch":
        return encode_and_mlp_reference(positions, table, spec, weights)
    kernels, why = _load_triton()
    if kernels is None:
        raise RuntimeError(
            f"backend='triton' needs Triton, but importing ng_methods.kernels.fused_mlp.triton failed ({why}); "
            "use backend='auto' or 'torch'."
        )
    kernels.check_triton_inputs(positions, table, spec, list(weights))
    if torch.is_grad_enabled() and any(t.requires_grad for t in (positions, table, *weights)):
        return _EncodeAndMLP.apply(positions, table, spec, *weights)
    return kernels.encode_and_mlp_forward(positions, table, spec, list(weights))
