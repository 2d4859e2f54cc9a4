"""Device code of the grid encoding's double backward (the backward of ``_grid_backward_kernel``), for eikonal losses.

Notation, per point ``n``, level ``l`` (scale ``s``), corner ``c`` (row ``r_c``): ``frac = s * x + 0.5 - floor``,
``w_c = prod_d a_cd`` with ``a_cd = bit_cd ? frac_d : 1 - frac_d`` and ``da_cd/dfrac_d = sign_cd = bit_cd ? 1 : -1``.
The first backward maps the cotangent ``G = dL/dout[n, l, :]`` to

* ``grad_table[r_c, :] += w_c * G``;
* ``grad_x[n, e] += s * sum_c dw_c/dfrac_e * (table[r_c] . G)``.

Its backward receives ``U = gg_table`` (``[n_params, F]``, the cotangent of ``grad_table``) and ``V = gg_positions``
(``[n, d]``, the cotangent of ``grad_x``). With ``u = s * V[n]`` (``d frac / dx = s``) and the weights' directional
derivative ``dw_c = sum_d dw_c/dfrac_d * u_d``, it returns

* d/dG ``[n, l, :] = sum_c w_c * U[r_c] + dw_c * table[r_c]``: the forward with table ``U`` plus the grid's
  forward-mode product with ``V``;
* d/dtable ``[r_c, :] += dw_c * G``: what an eikonal loss trains the table with;
* d/dx ``[n, e] = s * sum_c (dw_c/dfrac_e * (U[r_c] . G)
  + sum_{d != e} d2w_c/dfrac_d dfrac_e * u_d * (table[r_c] . G))``: the first-order position gradient with table
  ``U``, plus the interpolation's Hessian, whose only non-zero entries are the cross terms
  ``d2w_c/dfrac_d dfrac_e = sign_cd * sign_ce * prod_{k != d, e} a_ck`` (each factor is linear in its own fraction).

tiny-cuda-nn (@6ee3546, ``include/tiny-cuda-nn/encodings/grid.h``) computes the ``V`` terms in three kernels:
``kernel_grid_backward_input_backward_grid`` (l. 352, d/dtable), ``..._backward_input_backward_input`` (l. 458, the
Hessian cross terms, plus the diagonal for smoothstep interpolation) and ``..._backward_input_backward_dLdoutput``
(l. 626, from the forward's saved ``dy/dx``); its torch binding ignores ``U`` (``bindings/torch/tinycudann/modules.py``
l. 174-180: "x d(dL_dparam)_d(...)"). This one kernel computes the ``U`` and ``V`` terms together, matching the
PyTorch reference's autograd double backward.

Like the first order, a (point, level) with a NaN fraction (a non-finite or float32-overflowing coordinate) adds
nothing: its ``G``, ``u`` and fractions are zeroed, and its d/dG is 0.

Launch grid ``(cdiv(n, BLOCK), L)`` as the first-order kernels; d/dtable and d/dx are accumulated with relaxed
atomics (run-to-run float32 rounding-level nondeterminism), d/dG is stored. Work for an output that is not needed, or
for a cotangent that is absent (``HAS_GG_TABLE`` / ``HAS_GG_POS``), is compiled out.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ng_methods.kernels.grid_encoding.triton_kernels import _corner_factor, _corner_row, _level_setup


@triton.jit
def _direction(points, mask, bad, gg_pos_ptr, scale, D: tl.constexpr, BLOCK_SIZE: tl.constexpr,
               HAS_GG_POS: tl.constexpr):
    """``u = scale * gg_positions[n]`` per dim (zero without ``gg_positions``, at bad points and for dims >= D)."""
    u0 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    u1 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    u2 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    if HAS_GG_POS:
        u0 = tl.where(bad, 0.0, tl.load(gg_pos_ptr + points * D, mask=mask, other=0.0) * scale)
        if D > 1:
            u1 = tl.where(bad, 0.0, tl.load(gg_pos_ptr + points * D + 1, mask=mask, other=0.0) * scale)
        if D > 2:
            u2 = tl.where(bad, 0.0, tl.load(gg_pos_ptr + points * D + 2, mask=mask, other=0.0) * scale)
    return u0, u1, u2


@triton.jit
def _hessian_times_direction(a0, a1, a2, s0, s1, s2, u0, u1, u2, D: tl.constexpr):
    """``sum_k d2w_c/dfrac_k dfrac_e * u_k`` for e = 0, 1, 2: only the cross terms ``k != e`` (``w_c`` is linear in
    each fraction), ``sign_ck * sign_ce * prod_{j != k, e} a_cj``. Zero for D = 1."""
    h0 = tl.zeros_like(u0)
    h1 = tl.zeros_like(u0)
    h2 = tl.zeros_like(u0)
    if D == 2:
        h0 = (s0 * s1) * u1
        h1 = (s0 * s1) * u0
    if D == 3:
        h0 = s0 * (s1 * a2 * u1 + a1 * s2 * u2)
        h1 = s1 * (s0 * a2 * u0 + a0 * s2 * u2)
        h2 = s2 * (s0 * a1 * u0 + a0 * s1 * u1)
    return h0, h1, h2


@triton.jit
def _weight_and_derivatives(a0, a1, a2, s0, s1, s2, D: tl.constexpr):
    """``w_c`` (tcnn's product order) and ``dw_c/dfrac_d`` for d = 0, 1, 2 (unused dims return dummies)."""
    weight = a0
    g0 = s0
    g1 = s0
    g2 = s0
    if D == 2:
        weight = a0 * a1
        g0 = s0 * a1
        g1 = a0 * s1
    if D == 3:
        weight = a0 * a1 * a2
        g0 = s0 * a1 * a2
        g1 = a0 * s1 * a2
        g2 = a0 * a1 * s2
    return weight, g0, g1, g2


@triton.jit
def _grid_second_order_kernel(
    pos_ptr, table_ptr, grad_out_ptr, gg_table_ptr, gg_pos_ptr, d_grad_out_ptr, d_table_ptr, d_pos_ptr,
    scales_ptr, meta_ptr, n_points, n_levels,
    D: tl.constexpr, F: tl.constexpr, BLOCK_SIZE: tl.constexpr, HAS_GG_TABLE: tl.constexpr, HAS_GG_POS: tl.constexpr,
    NEED_GRAD_OUT: tl.constexpr, NEED_TABLE: tl.constexpr, NEED_POS: tl.constexpr, FMA_EMULATED: tl.constexpr,
):
    level = tl.program_id(1)
    points = (tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)).to(tl.int64)
    mask = points < n_points
    features = tl.arange(0, F)
    scale, table_size, offset, hashed, k0, k1, k2, c0, c1, c2, f0, f1, f2 = _level_setup(
        pos_ptr, scales_ptr, meta_ptr, points, mask, level, D, FMA_EMULATED
    )
    bad = (f0 != f0) | (f1 != f1) | (f2 != f2)
    f0, f1, f2 = tl.where(bad, 0.0, f0), tl.where(bad, 0.0, f1), tl.where(bad, 0.0, f2)
    out_offsets = points[:, None] * (n_levels * F) + level * F + features[None, :]
    grad = tl.zeros([BLOCK_SIZE, F], dtype=tl.float32)
    if NEED_TABLE or NEED_POS:
        grad = tl.load(grad_out_ptr + out_offsets, mask=mask[:, None], other=0.0).to(tl.float32)
        grad = tl.where(bad[:, None], 0.0, grad)
    u0, u1, u2 = _direction(points, mask, bad, gg_pos_ptr, scale, D, BLOCK_SIZE, HAS_GG_POS)
    d_grad = tl.zeros([BLOCK_SIZE, F], dtype=tl.float32)
    dx0 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    dx1 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    dx2 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for corner in tl.static_range(1 << D):
        a0, s0 = _corner_factor(f0, corner & 1)
        a1, s1 = _corner_factor(f1, (corner >> 1) & 1)
        a2, s2 = _corner_factor(f2, (corner >> 2) & 1)
        weight, g0, g1, g2 = _weight_and_derivatives(a0, a1, a2, s0, s1, s2, D)
        dw = g0 * u0 + g1 * u1 + g2 * u2  # u1, u2 are 0 for missing dims
        entries = _corner_row(c0, c1, c2, k0, k1, k2, hashed, table_size, offset, corner, D)[:, None] * F
        entries = entries + features[None, :]
        if HAS_GG_TABLE and (NEED_GRAD_OUT or NEED_POS):
            upstream = tl.load(gg_table_ptr + entries, mask=mask[:, None], other=0.0).to(tl.float32)
            if NEED_GRAD_OUT:
                d_grad += weight[:, None] * upstream
            if NEED_POS:  # the first-order position gradient, with table U
                dot = tl.sum(upstream * grad, axis=1)
                dx0 += g0 * dot
                dx1 += g1 * dot
                dx2 += g2 * dot
        if HAS_GG_POS and (NEED_GRAD_OUT or (NEED_POS and D > 1)):
            values = tl.load(table_ptr + entries, mask=mask[:, None], other=0.0).to(tl.float32)
            if NEED_GRAD_OUT:
                d_grad += dw[:, None] * values
            if NEED_POS and D > 1:
                dot = tl.sum(values * grad, axis=1)
                h0, h1, h2 = _hessian_times_direction(a0, a1, a2, s0, s1, s2, u0, u1, u2, D)
                dx0 += h0 * dot
                dx1 += h1 * dot
                dx2 += h2 * dot
        if HAS_GG_POS and NEED_TABLE:
            tl.atomic_add(d_table_ptr + entries, dw[:, None] * grad, mask=mask[:, None], sem="relaxed")
    if NEED_GRAD_OUT:
        d_grad = tl.where(bad[:, None], 0.0, d_grad)
        tl.store(d_grad_out_ptr + out_offsets, d_grad, mask=mask[:, None])
    if NEED_POS:  # d frac / dx = scale; the L level programs meet in the atomics
        tl.atomic_add(d_pos_ptr + points * D, dx0 * scale, mask=mask, sem="relaxed")
        if D > 1:
            tl.atomic_add(d_pos_ptr + points * D + 1, dx1 * scale, mask=mask, sem="relaxed")
        if D > 2:
            tl.atomic_add(d_pos_ptr + points * D + 2, dx2 * scale, mask=mask, sem="relaxed")
