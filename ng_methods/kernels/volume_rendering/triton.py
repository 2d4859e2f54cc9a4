"""Triton kernels for volume-rendering compositing over packed samples (forward and backward).

Same function as ``reference.py`` (nerfacc semantics). Samples are packed: sorted by ray, then by ``t`` within a ray.
Ray ``r`` owns samples ``offsets[r]:offsets[r + 1]``; ``offsets`` comes from ``torch.bincount`` + ``cumsum`` once per
call (:func:`packed_offsets`) and is shared by the forward and backward launches.

Kernel design: one program per ray. A program marches its ray in chunks of ``BLOCK`` samples, in order; inside a
chunk the optical depths ``s_i = sigma_i * dt_i`` are prefix-summed with ``tl.cumsum`` and the running optical depth
before the chunk is carried in a register, so ``T_i = exp(-sum_{j<i} s_j)`` (the reference's formula), all in fp32
whatever the input dtype. The exclusive sum is ``cumsum(s) - s``, except in a chunk holding a ``NaN`` / ``inf``,
where that would give ``inf - inf = NaN`` on the sample's own lane: there ``triton_kernels._exclusive_scan`` rebuilds
it exactly (finite part scanned with those lanes zeroed, plus the IEEE class of the non-finite ones before each lane).
A ``NaN`` / ``inf`` thus stays on its ray and acts only after its sample, as in the reference; the backward's suffix
sums take the same care. One forward launch writes the weights ``w_i = T_i * alpha_i`` and, fused, the per-ray sums
``sum w c``, ``sum w t_mid`` and ``sum w``, plus ``T_i`` (fp32) for the backward. With ``early_stop_eps > 0`` a
sample with ``T_i < eps`` gets weight 0 (nerfacc's ``render_visibility_from_density`` test, as a mask) and the ray
stops marching after the first chunk whose end has ``T < eps``; the backward starts from where the forward stopped.

Backward (one launch, one program per ray, chunks in *reverse* order so suffix sums are plain running sums, no
``total - prefix`` cancellation). With ``g_i = dL/dw_i`` (total: ``<dL/drgb, c_i> + dL/ddepth * tmid_i + dL/dacc +
dL/dweights_i``), ``m_i`` the early-stop mask, ``gT_i = dL/dT_i`` and ``ga_i = dL/dalpha_i`` (only for
:func:`render_weight_from_density`)::

    dL/ds_k     = m_k * g_k * T_k * exp(-s_k) + ga_k * exp(-s_k) - sum_{i>k} (g_i * w_i + gT_i * T_i)
    dL/dsigma_k = dL/ds_k * dt_k
    dL/dc_k     = w_k * dL/drgb

because ``dw_k/ds_k = m_k T_k exp(-s_k)`` (= ``T_{k+1}`` unmasked), ``dw_i/ds_k = -w_i`` and ``dT_i/ds_k = -T_i``
for ``i > k``, and ``dalpha_k/ds_k = exp(-s_k)``. Gradients with respect to ``t_starts`` / ``t_ends`` are not
computed (the callers' intervals are not differentiable); the dispatcher keeps such inputs off this backend.

Nothing here is compiled at import; this module itself is only imported when the Triton backend is used.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
from torch import Tensor
from torch.autograd.function import once_differentiable

from ng_methods.kernels.volume_rendering.triton_kernels import (
    march_fwd_kernel,
    march_bwd_kernel,
    accumulate_fwd_kernel,
    accumulate_bwd_kernel,
)

BLOCK = 64  # samples per chunk (NGP rays: tens to hundreds of samples)
NUM_WARPS = 2
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def packed_offsets(ray_indices: Tensor, n_rays: int) -> Tensor:
    """``[n_rays + 1]`` int64: ray ``r`` owns samples ``offsets[r]:offsets[r + 1]`` (``ray_indices`` sorted)."""
    counts = torch.bincount(ray_indices, minlength=n_rays)
    if counts.shape[0] != n_rays:
        raise ValueError(f"ray_indices reach {counts.shape[0] - 1} but n_rays={n_rays}")
    offsets = torch.zeros(n_rays + 1, dtype=torch.int64, device=ray_indices.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return offsets


def _check(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, ray_indices: Tensor) -> None:
    n = sigmas.shape[0]
    if sigmas.dim() != 1 or t_starts.shape != (n,) or t_ends.shape != (n,) or ray_indices.shape != (n,):
        raise ValueError("t_starts, t_ends, sigmas and ray_indices must all be [n_samples]")
    for name, x in (("t_starts", t_starts), ("t_ends", t_ends), ("sigmas", sigmas)):
        if x.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"Triton compositing supports float32/float16/bfloat16 {name}, got {x.dtype}")


def _pow2(c: int) -> int:
    return max(1, triton.next_power_of_2(c))


def _march_forward(
    t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, values: Optional[Tensor], offsets: Tensor,
    early_stop_eps: float, accumulate: bool, store_trans: bool, store_alphas: bool, out_dtype: torch.dtype,
):
    """Launch the forward kernel. Returns ``(values_sum, depth_sum, acc, weights, trans_fp32, alphas, alive_end)``."""
    n_rays = offsets.shape[0] - 1
    n = sigmas.shape[0]
    device = sigmas.device
    early_stop = early_stop_eps > 0
    c = values.shape[1] if values is not None else 1
    new = torch.zeros if early_stop else torch.empty  # samples after termination are never written
    weights = new(n, dtype=out_dtype, device=device)
    trans = torch.empty(n if store_trans else 0, dtype=torch.float32, device=device)
    alphas = torch.empty(n if store_alphas else 0, dtype=out_dtype, device=device)
    values_shape = (n_rays, c) if accumulate and values is not None else (0, c)
    out_values = torch.zeros(values_shape, dtype=out_dtype, device=device)
    out_depth = torch.zeros((n_rays if accumulate else 0, 1), dtype=out_dtype, device=device)
    out_acc = torch.zeros((n_rays if accumulate else 0, 1), dtype=out_dtype, device=device)
    alive_end = torch.empty(n_rays if early_stop else 0, dtype=torch.int64, device=device)
    if n_rays > 0 and n > 0:
        march_fwd_kernel[(n_rays,)](
            t_starts, t_ends, sigmas, values if values is not None else sigmas, offsets,
            out_values, out_depth, out_acc, weights, trans, alphas, alive_end,
            float(early_stop_eps),
            C=c, CP=_pow2(c), BLOCK=BLOCK,
            HAS_VALUES=values is not None, ACCUMULATE=accumulate, STORE_TRANS=store_trans,
            STORE_ALPHAS=store_alphas, EARLY_STOP=early_stop,
            num_warps=NUM_WARPS,
        )
    elif early_stop:
        alive_end = offsets[:-1].clone()
    return out_values, out_depth, out_acc, weights, trans, alphas, alive_end


def _march_backward(
    t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, values: Optional[Tensor], trans: Tensor, offsets: Tensor,
    alive_end: Tensor, early_stop_eps: float, g_values: Optional[Tensor], g_depth: Optional[Tensor],
    g_acc: Optional[Tensor], g_weights: Optional[Tensor], g_trans: Optional[Tensor], g_alphas: Optional[Tensor],
    need_values_grad: bool,
) -> Tuple[Tensor, Optional[Tensor]]:
    n_rays = offsets.shape[0] - 1
    n = sigmas.shape[0]
    early_stop = early_stop_eps > 0
    c = values.shape[1] if values is not None else 1
    grad_values_flag = need_values_grad and values is not None and g_values is not None
    # Samples past early termination are never visited: zero-filled.
    grad_sigmas = (torch.zeros if early_stop else torch.empty)(n, dtype=sigmas.dtype, device=sigmas.device)
    grad_values = None
    if need_values_grad and values is not None:
        grad_values = (torch.empty if grad_values_flag and not early_stop else torch.zeros)(
            values.shape, dtype=values.dtype, device=values.device
        )
    if n_rays > 0 and n > 0:

        def ptr(x: Optional[Tensor]) -> Tensor:
            return x.contiguous() if x is not None else sigmas

        march_bwd_kernel[(n_rays,)](
            t_starts, t_ends, sigmas, ptr(values), trans, offsets, alive_end if early_stop else offsets,
            ptr(g_values), ptr(g_depth), ptr(g_acc), ptr(g_weights), ptr(g_trans), ptr(g_alphas),
            grad_sigmas, grad_values if grad_values is not None else grad_sigmas,
            float(early_stop_eps),
            C=c, CP=_pow2(c), BLOCK=BLOCK,
            HAS_GV=values is not None and g_values is not None, HAS_GDEPTH=g_depth is not None,
            HAS_GACC=g_acc is not None, HAS_GW=g_weights is not None, HAS_GT=g_trans is not None,
            HAS_GALPHA=g_alphas is not None, GRAD_VALUES=grad_values_flag, EARLY_STOP=early_stop,
            num_warps=NUM_WARPS,
        )
    return grad_sigmas, grad_values


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t_starts, t_ends, sigmas, rgbs, offsets, early_stop_eps, out_dtype):
        rgb, depth, acc, weights, trans, _, alive_end = _march_forward(
            t_starts, t_ends, sigmas, rgbs, offsets, early_stop_eps,
            accumulate=True, store_trans=True, store_alphas=False, out_dtype=out_dtype,
        )
        ctx.save_for_backward(t_starts, t_ends, sigmas, rgbs, trans, offsets, alive_end)
        ctx.early_stop_eps = early_stop_eps
        ctx.set_materialize_grads(False)
        return rgb, depth, acc, weights

    @staticmethod
    @once_differentiable
    def backward(ctx, g_rgb, g_depth, g_acc, g_weights):
        t_starts, t_ends, sigmas, rgbs, trans, offsets, alive_end = ctx.saved_tensors
        if all(g is None for g in (g_rgb, g_depth, g_acc, g_weights)):
            return (None,) * 7
        grad_sigmas, grad_rgbs = _march_backward(
            t_starts, t_ends, sigmas, rgbs, trans, offsets, alive_end, ctx.early_stop_eps,
            g_rgb, g_depth, g_acc, g_weights, None, None, need_values_grad=ctx.needs_input_grad[3],
        )
        return None, None, grad_sigmas if ctx.needs_input_grad[2] else None, grad_rgbs, None, None, None


class _RenderWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t_starts, t_ends, sigmas, offsets, out_dtype):
        _, _, _, weights, trans, alphas, alive_end = _march_forward(
            t_starts, t_ends, sigmas, None, offsets, 0.0,
            accumulate=False, store_trans=True, store_alphas=True, out_dtype=out_dtype,
        )
        ctx.save_for_backward(t_starts, t_ends, sigmas, trans, offsets, alive_end)
        ctx.set_materialize_grads(False)
        return weights, trans.to(out_dtype), alphas

    @staticmethod
    @once_differentiable
    def backward(ctx, g_weights, g_trans, g_alphas):
        t_starts, t_ends, sigmas, trans, offsets, alive_end = ctx.saved_tensors
        if all(g is None for g in (g_weights, g_trans, g_alphas)):
            return (None,) * 5
        grad_sigmas, _ = _march_backward(
            t_starts, t_ends, sigmas, None, trans, offsets, alive_end, 0.0,
            None, None, None, g_weights, g_trans, g_alphas, need_values_grad=False,
        )
        return None, None, grad_sigmas, None, None


class _Accumulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights, values, offsets, out_dtype):
        out = _accumulate_forward(weights, values, offsets, out_dtype)
        ctx.save_for_backward(weights, values, offsets)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):
        weights, values, offsets = ctx.saved_tensors
        need_w, need_v = ctx.needs_input_grad[0], values is not None and ctx.needs_input_grad[1]
        n_rays = offsets.shape[0] - 1
        c = values.shape[1] if values is not None else 1
        grad_w = torch.zeros_like(weights) if need_w else None
        grad_v = torch.zeros_like(values) if need_v else None
        if n_rays > 0 and weights.shape[0] > 0 and (need_w or need_v):
            accumulate_bwd_kernel[(n_rays,)](
                weights, values if values is not None else weights, offsets, g_out.contiguous(),
                grad_w if need_w else weights, grad_v if need_v else weights,
                C=c, CP=_pow2(c), BLOCK=BLOCK, HAS_VALUES=values is not None,
                GRAD_WEIGHTS=need_w, GRAD_VALUES=need_v, num_warps=NUM_WARPS,
            )
        return grad_w, grad_v, None, None


def _accumulate_forward(weights: Tensor, values: Optional[Tensor], offsets: Tensor, out_dtype: torch.dtype) -> Tensor:
    n_rays = offsets.shape[0] - 1
    c = values.shape[1] if values is not None else 1
    out = torch.zeros((n_rays, c), dtype=out_dtype, device=weights.device)
    if n_rays > 0 and weights.shape[0] > 0:
        accumulate_fwd_kernel[(n_rays,)](
            weights, values if values is not None else weights, offsets, out,
            C=c, CP=_pow2(c), BLOCK=BLOCK, HAS_VALUES=values is not None, num_warps=NUM_WARPS,
        )
    return out


# --------------------------------------------------------------------------------------------------------------------
# public entry points (same signatures as the dispatchers in ``__init__.py``, minus ``backend``)


def _needs_graph(*tensors: Optional[Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _result_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def composite(
    t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, rgbs: Tensor, ray_indices: Tensor, n_rays: int,
    early_stop_eps: float = 0.0,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fused compositing: ``(rgb [n_rays, C], depth_sum [n_rays, 1], accumulation [n_rays, 1], weights [n])``.

    Differentiable with respect to ``sigmas`` and ``rgbs`` (not ``t_starts`` / ``t_ends``). Any channel count ``C``.
    """
    _check(t_starts, t_ends, sigmas, ray_indices)
    if rgbs.dim() != 2 or rgbs.shape[0] != sigmas.shape[0] or rgbs.dtype not in SUPPORTED_DTYPES:
        raise ValueError("rgbs must be a float32/float16/bfloat16 [n_samples, C] tensor")
    if t_starts.requires_grad or t_ends.requires_grad:
        raise ValueError("the Triton backend does not differentiate t_starts / t_ends; use backend='torch'")
    out_dtype = _result_dtype(t_starts, t_ends, sigmas, rgbs)
    offsets = packed_offsets(ray_indices, n_rays)
    args = (t_starts.contiguous(), t_ends.contiguous(), sigmas.contiguous(), rgbs.contiguous(), offsets)
    eps = float(early_stop_eps)
    if _needs_graph(sigmas, rgbs):
        return _Composite.apply(*args, eps, out_dtype)
    rgb, depth, acc, weights, _, _, _ = _march_forward(
        *args, eps, accumulate=True, store_trans=False, store_alphas=False, out_dtype=out_dtype
    )
    return rgb, depth, acc, weights


def render_weight_from_density(
    t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, ray_indices: Tensor, n_rays: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """``(weights, transmittance, alphas)``; differentiable with respect to ``sigmas``."""
    _check(t_starts, t_ends, sigmas, ray_indices)
    if t_starts.requires_grad or t_ends.requires_grad:
        raise ValueError("the Triton backend does not differentiate t_starts / t_ends; use backend='torch'")
    out_dtype = _result_dtype(t_starts, t_ends, sigmas)
    offsets = packed_offsets(ray_indices, n_rays)
    args = (t_starts.contiguous(), t_ends.contiguous(), sigmas.contiguous(), offsets)
    if _needs_graph(sigmas):
        return _RenderWeight.apply(*args, out_dtype)
    _, _, _, weights, trans, alphas, _ = _march_forward(
        *args[:3], None, offsets, 0.0, accumulate=False, store_trans=True, store_alphas=True, out_dtype=out_dtype
    )
    return weights, trans.to(out_dtype), alphas


def render_visibility_from_density(
    t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, ray_indices: Tensor, n_rays: int,
    early_stop_eps: float = 1e-4, alpha_thre: float = 0.0,
) -> Tensor:
    """Samples with transmittance ``>= early_stop_eps`` and (if ``alpha_thre > 0``) opacity ``>= alpha_thre``."""
    with torch.no_grad():
        _, trans, alphas = render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays)
    visible = trans >= early_stop_eps
    if alpha_thre > 0:
        visible = visible & (alphas >= alpha_thre)
    return visible


def accumulate_along_rays(weights: Tensor, values: Optional[Tensor], ray_indices: Tensor, n_rays: int) -> Tensor:
    """Per-ray ``sum_i w_i * v_i`` as a segmented reduction (deterministic; needs ray-sorted samples)."""
    if weights.dim() != 1 or ray_indices.shape != weights.shape or weights.dtype not in SUPPORTED_DTYPES:
        raise ValueError("weights and ray_indices must be [n_samples]; weights float32/float16/bfloat16")
    if values is not None and (values.dim() != 2 or values.shape[0] != weights.shape[0]):
        raise ValueError("values must be [n_samples, C]")
    out_dtype = weights.dtype if values is None else torch.promote_types(weights.dtype, values.dtype)
    offsets = packed_offsets(ray_indices, n_rays)
    weights = weights.contiguous()
    values = values.contiguous() if values is not None else None
    if _needs_graph(weights, values):
        return _Accumulate.apply(weights, values, offsets, out_dtype)
    return _accumulate_forward(weights, values, offsets, out_dtype)
