"""Device code of the fused grid encoding + MLP (see ``triton.py`` for the design): the forward and backward kernels
and their helpers. Imported lazily with ``triton.py``; nothing compiles until the first launch."""

from __future__ import annotations

import triton
import triton.language as tl

from ng_methods.kernels.triton_fma import fma_float32

CORNER_UNROLL = tl.constexpr(1)  # corners one after the other: unrolling all 2**d hoists every gather and spills


@triton.jit
def _cell(x, scale, FMA_EMULATED: tl.constexpr):
    """tcnn's ``pos_fract``: uint32 cell (CUDA's saturating float->int, NaN -> 0) and fraction, ``[BLOCK, L_PAD]``."""
    xs, scales = tl.broadcast(x[:, None], scale)
    pos = fma_float32(xs, scales, tl.full(xs.shape, 0.5, tl.float32), FMA_EMULATED)
    floor = tl.floor(pos)
    clamped = tl.minimum(tl.maximum(floor, -2147483648.0), 2147483520.0)  # largest float32 below 2**31
    cell = tl.where(floor != floor, 0.0, clamped).to(tl.int32)
    cell = tl.where(floor >= 2147483648.0, 2147483647, cell)
    return cell.to(tl.uint32, bitcast=True), pos - floor


@triton.jit
def _setup(pos_ptr, stride_pn, stride_pd, pts, pmask, meta_ptr, D: tl.constexpr, L: tl.constexpr,
           L_PAD: tl.constexpr, FMA_EMULATED: tl.constexpr):
    """Per-level constants as ``[1, L_PAD]`` rows and per-dim cells / fractions; missing dims are exact zeros."""
    lv = tl.arange(0, L_PAD)
    scale = tl.load(meta_ptr + lv).to(tl.float32, bitcast=True)[None, :]
    size = tl.load(meta_ptr + L_PAD + lv).to(tl.uint32, bitcast=True)[None, :]
    offset = tl.load(meta_ptr + 2 * L_PAD + lv)[None, :]
    hashed = (tl.load(meta_ptr + 3 * L_PAD + lv) != 0)[None, :]
    fac0 = tl.load(meta_ptr + 4 * L_PAD + lv).to(tl.uint32, bitcast=True)[None, :]
    fac1 = tl.load(meta_ptr + 5 * L_PAD + lv).to(tl.uint32, bitcast=True)[None, :]
    fac2 = tl.load(meta_ptr + 6 * L_PAD + lv).to(tl.uint32, bitcast=True)[None, :]
    x0 = tl.load(pos_ptr + pts * stride_pn, mask=pmask, other=0.0)
    cell0, fr0 = _cell(x0, scale, FMA_EMULATED)
    cell1, fr1, cell2, fr2 = tl.zeros_like(cell0), tl.zeros_like(fr0), tl.zeros_like(cell0), tl.zeros_like(fr0)
    if D > 1:
        x1 = tl.load(pos_ptr + pts * stride_pn + stride_pd, mask=pmask, other=0.0)
        cell1, fr1 = _cell(x1, scale, FMA_EMULATED)
    if D > 2:
        x2 = tl.load(pos_ptr + pts * stride_pn + 2 * stride_pd, mask=pmask, other=0.0)
        cell2, fr2 = _cell(x2, scale, FMA_EMULATED)
    lmask = (lv < L)[None, :] & pmask[:, None]
    return scale, size, offset, hashed, fac0, fac1, fac2, cell0, cell1, cell2, fr0, fr1, fr2, lmask


@triton.jit
def _corner(C, size, offset, hashed, fac0, fac1, fac2, cell0, cell1, cell2, fr0, fr1, fr2):
    """Flat-table row and weight of corner ``C`` (bit ``d`` = upper neighbour along dim ``d``), plus the factors."""
    b0 = C & 1
    b1 = (C >> 1) & 1
    b2 = (C >> 2) & 1
    g0 = tl.where(b0 != 0, fr0, 1.0 - fr0)
    g1 = tl.where(b1 != 0, fr1, 1.0 - fr1)
    g2 = tl.where(b2 != 0, fr2, 1.0 - fr2)
    t0 = (cell0 + b0.to(tl.uint32)) * fac0
    t1 = (cell1 + b1.to(tl.uint32)) * fac1
    t2 = (cell2 + b2.to(tl.uint32)) * fac2
    index = tl.where(hashed, t0 ^ t1 ^ t2, t0 + t1 + t2) % size  # factors are primes (hash) or strides (dense)
    return offset + index.to(tl.int32, bitcast=True), g0 * g1 * g2, g0, g1, g2  # tcnn's 1 * g0 * g1 * g2


@triton.jit
def _mm(a, b, HALF: tl.constexpr, PRECISION: tl.constexpr):
    if HALF:
        out = tl.dot(a.to(tl.float16), b.to(tl.float16))
    else:
        out = tl.dot(a, b.to(tl.float32), input_precision=PRECISION)
    return out


@triton.jit
def _wt_offsets(IN: tl.constexpr, OUT: tl.constexpr, IN_PAD: tl.constexpr, OUT_PAD: tl.constexpr, F: tl.constexpr,
                F_PAD: tl.constexpr):
    """Offsets and mask of ``W^T`` as an ``[IN_PAD, OUT_PAD]`` tile of ``W [OUT, IN]``: tile row ``i`` is input
    ``(i // F_PAD) * F + i % F_PAD`` (the encoding's ``[L_PAD, F_PAD]`` padding; ``F == F_PAD`` for hidden layers)."""
    i = tl.arange(0, IN_PAD)
    o = tl.arange(0, OUT_PAD)
    col = (i // F_PAD) * F + i % F_PAD
    return o[None, :] * IN + col[:, None], ((i % F_PAD < F) & (col < IN))[:, None] & (o < OUT)[None, :]


@triton.jit
def _load_wt(w_ptr, IN: tl.constexpr, OUT: tl.constexpr, IN_PAD: tl.constexpr, OUT_PAD: tl.constexpr,
             F: tl.constexpr, F_PAD: tl.constexpr):
    """``W^T`` tile ``[IN_PAD, OUT_PAD]`` (zero padded)."""
    offsets, mask = _wt_offsets(IN, OUT, IN_PAD, OUT_PAD, F, F_PAD)
    return tl.load(w_ptr + offsets, mask=mask, other=0.0)


@triton.jit
def _load_w(w_ptr, IN: tl.constexpr, OUT: tl.constexpr, IN_PAD: tl.constexpr, OUT_PAD: tl.constexpr,
            F: tl.constexpr, F_PAD: tl.constexpr):
    """``W`` tile ``[OUT_PAD, IN_PAD]`` (zero padded), loaded directly in that shape (no transpose)."""
    offsets, mask = _wt_offsets(IN, OUT, IN_PAD, OUT_PAD, F, F_PAD)
    return tl.load(w_ptr + tl.trans(offsets), mask=tl.trans(mask), other=0.0)


@triton.jit
def _encode(table_ptr, size, offset, hashed, fac0, fac1, fac2, cell0, cell1, cell2, fr0, fr1, fr2, lmask,
            D: tl.constexpr, F: tl.constexpr, F_PAD: tl.constexpr, L_PAD: tl.constexpr, BLOCK: tl.constexpr):
    f = tl.arange(0, F_PAD)[None, None, :]
    mask = lmask[:, :, None] & (f < F)
    enc = tl.zeros((BLOCK, L_PAD, F_PAD), tl.float32)
    for C in tl.range(0, 1 << D, loop_unroll_factor=CORNER_UNROLL):
        row, w, g0, g1, g2 = _corner(C, size, offset, hashed, fac0, fac1, fac2, cell0, cell1, cell2, fr0, fr1, fr2)
        values = tl.load(table_ptr + row[:, :, None] * F + f, mask=mask, other=0.0)
        enc += w[:, :, None] * values.to(tl.float32)
    enc = enc.to(table_ptr.dtype.element_ty).to(tl.float32)  # the encoding is rounded to the table dtype
    return tl.reshape(enc, (BLOCK, L_PAD * F_PAD))


@triton.jit
def _not_finite_rows(enc):
    """``[BLOCK]``: points whose encoding has a NaN (a non-finite or float32-overflowing coordinate, or table)."""
    return tl.max(tl.where(enc != enc, 1, 0), axis=1) > 0


@triton.jit
def _zero_nan(x):
    return tl.where(x != x, 0.0, x)


@triton.jit
def _fwd_kernel(pos_ptr, stride_pn, stride_pd, table_ptr, meta_ptr, w_in, w_h1, w_h2, w_out, out_ptr, n,
                D: tl.constexpr, L: tl.constexpr, F: tl.constexpr, L_PAD: tl.constexpr, F_PAD: tl.constexpr,
                H: tl.constexpr, O: tl.constexpr, H_PAD: tl.constexpr, O_PAD: tl.constexpr, N_MID: tl.constexpr,
                HALF: tl.constexpr, PRECISION: tl.constexpr, FMA_EMULATED: tl.constexpr, BLOCK: tl.constexpr):
    pts = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    pmask = pts < n
    scale, size, offset, hashed, fac0, fac1, fac2, cell0, cell1, cell2, fr0, fr1, fr2, lmask = _setup(
        pos_ptr, stride_pn, stride_pd, pts, pmask, meta_ptr, D, L, L_PAD, FMA_EMULATED)
    x = _encode(table_ptr, size, offset, hashed, fac0, fac1, fac2, cell0, cell1, cell2, fr0, fr1, fr2, lmask,
                D, F, F_PAD, L_PAD, BLOCK)
    bad = _not_finite_rows(x)
    x = tl.where(bad[:, None], 0.0, x)
    wt = _load_wt(w_in, L * F, H, L_PAD * F_PAD, H_PAD, F, F_PAD)
    x = tl.maximum(_mm(x, wt, HALF, PRECISION), 0.0)
    if N_MID > 0:
        wt = _load_wt(w_h1, H, H, H_PAD, H_PAD, 1, 1)
        x = tl.maximum(_mm(x, wt, HALF, PRECISION), 0.0)
    if N_MID > 1:
        wt = _load_wt(w_h2, H, H, H_PAD, H_PAD, 1, 1)
        x = tl.maximum(_mm(x, wt, HALF, PRECISION), 0.0)
    wt = _load_wt(w_out, H, O, H_PAD, O_PAD, 1, 1)
    y = tl.where(bad[:, None], float("nan"), _mm(x, wt, HALF, PRECISION))
    o = tl.arange(0, O_PAD)[None, :]
    tl.store(out_ptr + pts[:, None] * O + o, y, mask=pmask[:, None] & (o < O))


@triton.jit
def _bwd_kernel(pos_ptr, stride_pn, stride_pd, table_ptr, meta_ptr, w_in, w_h1, w_h2, w_out,
                dy_ptr, stride_gn, stride_go, g_table, g_in, g_h1, g_h2, g_out, g_pos, n, n_blocks,
                D: tl.constexpr, L: tl.constexpr, F: tl.constexpr, L_PAD: tl.constexpr, F_PAD: tl.constexpr,
                H: tl.constexpr, O: tl.constexpr, H_PAD: tl.constexpr, O_PAD: tl.constexpr, N_MID: tl.constexpr,
                HALF: tl.constexpr, PRECISION: tl.constexpr, TABLE_GRAD: tl.constexpr, POS_GRAD: tl.constexpr,
                FMA_EMULATED: tl.constexpr, BLOCK: tl.constexpr):
    K: tl.constexpr = L * F
    K_PAD: tl.constexpr = L_PAD * F_PAD
    acc_in = tl.zeros((K_PAD, H_PAD), tl.float32)
    acc_out = tl.zeros((H_PAD, O_PAD), tl.float32)
    if N_MID > 0:
        acc_h1 = tl.zeros((H_PAD, H_PAD), tl.float32)
    if N_MID > 1:
        acc_h2 = tl.zeros((H_PAD, H_PAD), tl.float32)
    o = tl.arange(0, O_PAD)[None, :]
    f = tl.arange(0, F_PAD)[None, None, :]
    # Weights are re-read (L1/L2 hits) per block rather than hoisted: long-lived weight tiles made ptxas spill.
    for block in tl.range(tl.program_id(0), n_blocks, tl.num_programs(0), disable_licm=True):
        pts = block * BLOCK + tl.arange(0, BLOCK)
        pmask = pts < n
        scale, size, offset, hashed, fac0, fac1, fac2, cell0, cell1, cell2, fr0, fr1, fr2, lmask = _setup(
            pos_ptr, stride_pn, stride_pd, pts, pmask, meta_ptr, D, L, L_PAD, FMA_EMULATED)
        # Recompute the forward pass.
        x0 = _encode(table_ptr, size, offset, hashed, fac0, fac1, fac2, cell0, cell1, cell2, fr0, fr1, fr2, lmask,
                     D, F, F_PAD, L_PAD, BLOCK)
        bad = _not_finite_rows(x0)  # NaN outputs that must add nothing to any gradient
        x0 = tl.where(bad[:, None], 0.0, x0)
        x1 = tl.maximum(_mm(x0, _load_wt(w_in, K, H, K_PAD, H_PAD, F, F_PAD), HALF, PRECISION), 0.0)
        x_last = x1
        if N_MID > 0:
            x2 = tl.maximum(_mm(x1, _load_wt(w_h1, H, H, H_PAD, H_PAD, 1, 1), HALF, PRECISION), 0.0)
            x_last = x2
        if N_MID > 1:
            x3 = tl.maximum(_mm(x2, _load_wt(w_h2, H, H, H_PAD, H_PAD, 1, 1), HALF, PRECISION), 0.0)
            x_last = x3
        # Backpropagate through the MLP; dW^T = x^T @ dz is accumulated as [in, out] like the W^T tiles.
        dz = tl.load(dy_ptr + pts[:, None] * stride_gn + o * stride_go, mask=pmask[:, None] & (o < O), other=0.0)
        dz = tl.where(bad[:, None], 0.0, dz.to(tl.float32))
        acc_out += _mm(tl.trans(x_last), dz, HALF, PRECISION)
        dx = _mm(dz, _load_w(w_out, H, O, H_PAD, O_PAD, 1, 1), HALF, PRECISION)
        if N_MID > 1:
            dz = tl.where(x3 > 0, dx, 0.0)
            acc_h2 += _mm(tl.trans(x2), dz, HALF, PRECISION)
            dx = _mm(dz, _load_w(w_h2, H, H, H_PAD, H_PAD, 1, 1), HALF, PRECISION)
        if N_MID > 0:
            dz = tl.where(x2 > 0, dx, 0.0)
            acc_h1 += _mm(tl.trans(x1), dz, HALF, PRECISION)
            dx = _mm(dz, _load_w(w_h1, H, H, H_PAD, H_PAD, 1, 1), HALF, PRECISION)
        dz = tl.where(x1 > 0, dx, 0.0)
        acc_in += _mm(tl.trans(x0), dz, HALF, PRECISION)
        d_enc = _mm(dz, _load_w(w_in, K, H, K_PAD, H_PAD, F, F_PAD), HALF, PRECISION)
        d_enc = tl.reshape(d_enc, (BLOCK, L_PAD, F_PAD))
        # Scatter into the table (and gather it again for d/dpositions).
        mask = lmask[:, :, None] & (f < F)
        d_fr0 = tl.zeros((BLOCK, L_PAD), tl.float32)
        d_fr1 = tl.zeros((BLOCK, L_PAD), tl.float32)
        d_fr2 = tl.zeros((BLOCK, L_PAD), tl.float32)
        for C in tl.range(0, 1 << D, loop_unroll_factor=CORNER_UNROLL):
            row, w, g0, g1, g2 = _corner(C, size, offset, hashed, fac0, fac1, fac2, cell0, cell1, cell2,
                                         fr0, fr1, fr2)
            w, g0, g1, g2 = _zero_nan(w), _zero_nan(g0), _zero_nan(g1), _zero_nan(g2)  # bad rows: d_enc is 0
            ptrs = row[:, :, None] * F + f
            if TABLE_GRAD:
                tl.atomic_add(g_table + ptrs, w[:, :, None] * d_enc, mask=mask, sem="relaxed")
            if POS_GRAD:
                values = tl.load(table_ptr + ptrs, mask=mask, other=0.0).to(tl.float32)
                d_w = tl.sum(values * d_enc, axis=2)  # dL/d(corner weight), [BLOCK, L_PAD]
                d_fr0 += tl.where((C & 1) != 0, d_w, -d_w) * (g1 * g2)  # d weight / d frac_d = +-(the others)
                d_fr1 += tl.where((C & 2) != 0, d_w, -d_w) * (g0 * g2)
                d_fr2 += tl.where((C & 4) != 0, d_w, -d_w) * (g0 * g1)
        if POS_GRAD:  # d frac / dx = scale
            tl.store(g_pos + pts * D, tl.sum(d_fr0 * scale, axis=1), mask=pmask)
            if D > 1:
                tl.store(g_pos + pts * D + 1, tl.sum(d_fr1 * scale, axis=1), mask=pmask)
            if D > 2:
                tl.store(g_pos + pts * D + 2, tl.sum(d_fr2 * scale, axis=1), mask=pmask)
    off, m = _wt_offsets(K, H, K_PAD, H_PAD, F, F_PAD)
    tl.atomic_add(g_in + off, acc_in, mask=m, sem="relaxed")
    off, m = _wt_offsets(H, O, H_PAD, O_PAD, 1, 1)
    tl.atomic_add(g_out + off, acc_out, mask=m, sem="relaxed")
    off, m = _wt_offsets(H, H, H_PAD, H_PAD, 1, 1)
    if N_MID > 0:
        tl.atomic_add(g_h1 + off, acc_h1, mask=m, sem="relaxed")
    if N_MID > 1:
        tl.atomic_add(g_h2 + off, acc_h2, mask=m, sem="relaxed")


# ------------------------------------------------------------------------------------------------------------ host
