"""The ``@triton.jit`` kernels of the compositing backend: fused forward and backward ray marching, and the per-ray
weighted sums. The math, launch layout and backward formula are documented in ``triton.py``; this module only holds
the device code (compiled on first launch, never at import).
"""

import triton
import triton.language as tl

# --------------------------------------------------------------------------------------------------------------------
# helpers


@triton.jit
def _any_non_finite(x):
    """Whether any lane of ``x`` is ``NaN`` or ``+-inf`` (a scalar)."""
    return tl.sum((tl.abs(x) < float("inf")).to(tl.int32), axis=0) < x.numel


@triton.jit
def _exclusive_scan(x, REVERSE: tl.constexpr):
    """``sum_{j<i} x_j`` (``REVERSE``: ``sum_{j>i} x_j``) per lane, exact for ``NaN`` / ``inf`` (IEEE sum classes).

    ``cumsum(x) - x`` is the fast form but turns a non-finite ``x_i`` into ``inf - inf = NaN`` on its own lane. Here
    the finite part is scanned with non-finite lanes zeroed, and the non-finite part is rebuilt from exact counts of
    ``NaN`` / ``+inf`` / ``-inf`` lanes strictly before (after) each lane.
    """
    finite = tl.abs(x) < float("inf")
    x0 = tl.where(finite, x, 0.0)
    out = tl.cumsum(x0, axis=0, reverse=REVERSE) - x0
    is_nan = (x != x).to(tl.int32)
    is_pos = (x == float("inf")).to(tl.int32)
    is_neg = (x == -float("inf")).to(tl.int32)
    nan_seen = (tl.cumsum(is_nan, axis=0, reverse=REVERSE) - is_nan) > 0
    pos_seen = (tl.cumsum(is_pos, axis=0, reverse=REVERSE) - is_pos) > 0
    neg_seen = (tl.cumsum(is_neg, axis=0, reverse=REVERSE) - is_neg) > 0
    out = tl.where(pos_seen, float("inf"), out)
    out = tl.where(neg_seen, -float("inf"), out)
    return tl.where(nan_seen | (pos_seen & neg_seen), float("nan"), out)


# --------------------------------------------------------------------------------------------------------------------
# kernels


@triton.jit
def march_fwd_kernel(
    t_starts_ptr, t_ends_ptr, sigmas_ptr, values_ptr, offsets_ptr,
    out_values_ptr, out_depth_ptr, out_acc_ptr, weights_ptr, trans_ptr, alphas_ptr, alive_end_ptr,
    early_stop_eps,
    C: tl.constexpr, CP: tl.constexpr, BLOCK: tl.constexpr,
    HAS_VALUES: tl.constexpr, ACCUMULATE: tl.constexpr, STORE_TRANS: tl.constexpr, STORE_ALPHAS: tl.constexpr,
    EARLY_STOP: tl.constexpr,
):
    ray = tl.program_id(0).to(tl.int64)
    start = tl.load(offsets_ptr + ray)
    end = tl.load(offsets_ptr + ray + 1)
    lanes = tl.arange(0, BLOCK)
    chans = tl.arange(0, CP)
    carry = 0.0  # optical depth before the current chunk
    acc_w = 0.0
    acc_d = 0.0
    acc_v = tl.zeros([CP], dtype=tl.float32)
    base = start
    go = base < end
    while go:
        idx = base + lanes
        m = idx < end
        t0 = tl.load(t_starts_ptr + idx, mask=m, other=0.0).to(tl.float32)
        t1 = tl.load(t_ends_ptr + idx, mask=m, other=0.0).to(tl.float32)
        sig = tl.load(sigmas_ptr + idx, mask=m, other=0.0).to(tl.float32)
        s = sig * (t1 - t0)
        before = tl.cumsum(s, axis=0) - s  # sum over j < i in the chunk; wrong (inf - inf) where s_i is not finite
        if _any_non_finite(s):
            before = _exclusive_scan(s, False)
        trans = tl.exp(-(carry + before))
        alpha = 1.0 - tl.exp(-s)
        w = trans * alpha
        if EARLY_STOP:
            w = tl.where(trans >= early_stop_eps, w, 0.0)
        tl.store(weights_ptr + idx, w.to(weights_ptr.dtype.element_ty), mask=m)
        if STORE_TRANS:
            tl.store(trans_ptr + idx, trans, mask=m)
        if STORE_ALPHAS:
            tl.store(alphas_ptr + idx, alpha.to(alphas_ptr.dtype.element_ty), mask=m)
        if ACCUMULATE:
            acc_w += tl.sum(w, axis=0)
            acc_d += tl.sum(w * ((t0 + t1) * 0.5), axis=0)
            if HAS_VALUES:
                vmask = m[:, None] & (chans[None, :] < C)
                v = tl.load(values_ptr + idx[:, None] * C + chans[None, :], mask=vmask, other=0.0).to(tl.float32)
                acc_v += tl.sum(w[:, None] * v, axis=0)
        carry += tl.sum(s, axis=0)
        base += BLOCK
        go = base < end
        if EARLY_STOP:
            go = go & (tl.exp(-carry) >= early_stop_eps)
    if ACCUMULATE:
        tl.store(out_acc_ptr + ray, acc_w.to(out_acc_ptr.dtype.element_ty))
        tl.store(out_depth_ptr + ray, acc_d.to(out_depth_ptr.dtype.element_ty))
        if HAS_VALUES:
            tl.store(out_values_ptr + ray * C + chans, acc_v.to(out_values_ptr.dtype.element_ty), mask=chans < C)
    if EARLY_STOP:
        tl.store(alive_end_ptr + ray, tl.minimum(base, end))


@triton.jit
def march_bwd_kernel(
    t_starts_ptr, t_ends_ptr, sigmas_ptr, values_ptr, trans_ptr, offsets_ptr, alive_end_ptr,
    g_values_ptr, g_depth_ptr, g_acc_ptr, g_weights_ptr, g_trans_ptr, g_alphas_ptr,
    grad_sigmas_ptr, grad_values_ptr,
    early_stop_eps,
    C: tl.constexpr, CP: tl.constexpr, BLOCK: tl.constexpr,
    HAS_GV: tl.constexpr, HAS_GDEPTH: tl.constexpr, HAS_GACC: tl.constexpr, HAS_GW: tl.constexpr,
    HAS_GT: tl.constexpr, HAS_GALPHA: tl.constexpr, GRAD_VALUES: tl.constexpr, EARLY_STOP: tl.constexpr,
):
    ray = tl.program_id(0).to(tl.int64)
    start = tl.load(offsets_ptr + ray)
    if EARLY_STOP:
        stop = tl.load(alive_end_ptr + ray)
    else:
        stop = tl.load(offsets_ptr + ray + 1)
    lanes = tl.arange(0, BLOCK)
    chans = tl.arange(0, CP)
    g_acc = 0.0
    if HAS_GACC:
        g_acc = tl.load(g_acc_ptr + ray).to(tl.float32)
    g_depth = 0.0
    if HAS_GDEPTH:
        g_depth = tl.load(g_depth_ptr + ray).to(tl.float32)
    g_v = tl.zeros([CP], dtype=tl.float32)
    if HAS_GV:
        g_v = tl.load(g_values_ptr + ray * C + chans, mask=chans < C, other=0.0).to(tl.float32)
    n_chunks = tl.cdiv(stop - start, BLOCK)
    suffix = 0.0  # sum over the samples after the current chunk of g_i * w_i + gT_i * T_i
    for chunk in range(0, n_chunks):
        idx = start + (n_chunks - 1 - chunk) * BLOCK + lanes
        m = idx < stop
        t0 = tl.load(t_starts_ptr + idx, mask=m, other=0.0).to(tl.float32)
        t1 = tl.load(t_ends_ptr + idx, mask=m, other=0.0).to(tl.float32)
        sig = tl.load(sigmas_ptr + idx, mask=m, other=0.0).to(tl.float32)
        trans = tl.load(trans_ptr + idx, mask=m, other=0.0)
        dt = t1 - t0
        s = sig * dt
        decay = tl.exp(-s)
        w = trans * (1.0 - decay)
        dw_ds = trans * decay
        if EARLY_STOP:
            alive = trans >= early_stop_eps
            w = tl.where(alive, w, 0.0)
            dw_ds = tl.where(alive, dw_ds, 0.0)
        g = tl.zeros([BLOCK], dtype=tl.float32) + g_acc
        if HAS_GDEPTH:
            g += g_depth * ((t0 + t1) * 0.5)
        if HAS_GW:
            g += tl.load(g_weights_ptr + idx, mask=m, other=0.0).to(tl.float32)
        if HAS_GV:
            vmask = m[:, None] & (chans[None, :] < C)
            v = tl.load(values_ptr + idx[:, None] * C + chans[None, :], mask=vmask, other=0.0).to(tl.float32)
            g += tl.sum(v * g_v[None, :], axis=1)
        h = g * w
        if HAS_GT:
            h += tl.load(g_trans_ptr + idx, mask=m, other=0.0).to(tl.float32) * trans
        after = tl.cumsum(h, axis=0, reverse=True) - h  # sum over i > k in the chunk; wrong where h_k is not finite
        if _any_non_finite(h):
            after = _exclusive_scan(h, True)
        after += suffix
        d_s = g * dw_ds - after
        if HAS_GALPHA:
            d_s += tl.load(g_alphas_ptr + idx, mask=m, other=0.0).to(tl.float32) * decay
        tl.store(grad_sigmas_ptr + idx, (d_s * dt).to(grad_sigmas_ptr.dtype.element_ty), mask=m)
        if GRAD_VALUES:
            gmask = m[:, None] & (chans[None, :] < C)
            gvals = w[:, None] * g_v[None, :]
            tl.store(grad_values_ptr + idx[:, None] * C + chans[None, :],
                     gvals.to(grad_values_ptr.dtype.element_ty), mask=gmask)
        suffix += tl.sum(h, axis=0)


@triton.jit
def accumulate_fwd_kernel(
    weights_ptr, values_ptr, offsets_ptr, out_ptr,
    C: tl.constexpr, CP: tl.constexpr, BLOCK: tl.constexpr, HAS_VALUES: tl.constexpr,
):
    ray = tl.program_id(0).to(tl.int64)
    start = tl.load(offsets_ptr + ray)
    end = tl.load(offsets_ptr + ray + 1)
    lanes = tl.arange(0, BLOCK)
    chans = tl.arange(0, CP)
    acc = tl.zeros([CP], dtype=tl.float32)
    for base in range(start, end, BLOCK):
        idx = base + lanes
        m = idx < end
        w = tl.load(weights_ptr + idx, mask=m, other=0.0).to(tl.float32)
        if HAS_VALUES:
            vmask = m[:, None] & (chans[None, :] < C)
            v = tl.load(values_ptr + idx[:, None] * C + chans[None, :], mask=vmask, other=0.0).to(tl.float32)
            acc += tl.sum(w[:, None] * v, axis=0)
        else:
            acc += tl.sum(w, axis=0)
    tl.store(out_ptr + ray * C + chans, acc.to(out_ptr.dtype.element_ty), mask=chans < C)


@triton.jit
def accumulate_bwd_kernel(
    weights_ptr, values_ptr, offsets_ptr, g_out_ptr, grad_weights_ptr, grad_values_ptr,
    C: tl.constexpr, CP: tl.constexpr, BLOCK: tl.constexpr, HAS_VALUES: tl.constexpr,
    GRAD_WEIGHTS: tl.constexpr, GRAD_VALUES: tl.constexpr,
):
    ray = tl.program_id(0).to(tl.int64)
    start = tl.load(offsets_ptr + ray)
    end = tl.load(offsets_ptr + ray + 1)
    lanes = tl.arange(0, BLOCK)
    chans = tl.arange(0, CP)
    g_out = tl.load(g_out_ptr + ray * C + chans, mask=chans < C, other=0.0).to(tl.float32)
    for base in range(start, end, BLOCK):
        idx = base + lanes
        m = idx < end
        if GRAD_WEIGHTS:
            if HAS_VALUES:
                vmask = m[:, None] & (chans[None, :] < C)
                v = tl.load(values_ptr + idx[:, None] * C + chans[None, :], mask=vmask, other=0.0).to(tl.float32)
                gw = tl.sum(v * g_out[None, :], axis=1)
            else:
                gw = tl.zeros([BLOCK], dtype=tl.float32) + tl.sum(g_out, axis=0)
            tl.store(grad_weights_ptr + idx, gw.to(grad_weights_ptr.dtype.element_ty), mask=m)
        if GRAD_VALUES:
            w = tl.load(weights_ptr + idx, mask=m, other=0.0).to(tl.float32)
            gmask = m[:, None] & (chans[None, :] < C)
            gv = w[:, None] * g_out[None, :]
            tl.store(grad_values_ptr + idx[:, None] * C + chans[None, :],
                     gv.to(grad_values_ptr.dtype.element_ty), mask=gmask)


# --------------------------------------------------------------------------------------------------------------------
# host side
