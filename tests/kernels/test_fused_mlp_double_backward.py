"""Second order of ``encode_and_mlp(..., backend="triton")`` (eikonal losses) against the reference's autograd.

Without CUDA the kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1``), so grids, widths and batches
are tiny.

Tolerance, from float32 rounding: the Triton path and the float32 reference evaluate the same sums of products in
float32 in different orders, so each differs from the exact value by float32 rounding of the same size. That size is
measured on the spot as ``err32 = max |reference(float32) - reference(float64)|`` per gradient (the float64 reference
runs on the same float32 positions, hence the same cells and fractions); the Triton result must lie within
``2 * err32`` (two float32 evaluations) ``+ 2 * err32`` (their summation orders differ) of the float32 reference, plus
``8 u max|gradient|`` (``u = 2**-24``) for gradients the float32 reference happens to get (nearly) exact. On CUDA the
compiled kernels are compared the same way (the MLP matmuls of the second-order path run in fp32 there too: torch's
default ``allow_tf32=False``).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from ng_methods.kernels.fused_mlp import encode_and_mlp, encode_and_mlp_reference  # noqa: E402
from ng_methods.kernels.grid_encoding import GridSpec  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
UNIT_ROUNDOFF = 2.0**-24
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SPECS = {  # hash / dense, 2-D and 3-D, F = 1, 2, 4
    "hash3d-f2": GridSpec(n_levels=3, n_features_per_level=2, log2_hashmap_size=8, base_resolution=4,
                          per_level_scale=2.0),
    "dense3d-f1": GridSpec(n_levels=3, n_features_per_level=1, base_resolution=3, per_level_scale=1.5,
                           grid_type="dense"),
    "dense2d-f4": GridSpec(n_levels=2, n_features_per_level=4, base_resolution=4, per_level_scale=1.5, n_dims=2,
                           grid_type="dense"),
    "hash2d-f2": GridSpec(n_levels=3, n_features_per_level=2, log2_hashmap_size=6, base_resolution=4,
                          per_level_scale=2.0, n_dims=2),
}
N_POINTS = 90  # two backward blocks of 64


def _inputs(spec: GridSpec, hidden_layers: int, seed: int):
    """Points (one NaN, one overflowing), a table and He-uniform weights ``[hidden] * layers + [4]``."""
    generator = torch.Generator().manual_seed(seed)
    positions = torch.rand(N_POINTS, spec.n_dims, generator=generator) * 1.2 - 0.1
    positions[0, 0], positions[1, -1] = float("nan"), 3e38
    table = torch.rand(spec.n_params, spec.n_features_per_level, generator=generator) * 2 - 1
    dims = [spec.n_output_dims] + [32] * hidden_layers + [4]
    weights = [(torch.rand(b, a, generator=generator) * 2 - 1) * (6 / a) ** 0.5 for a, b in zip(dims[:-1], dims[1:])]
    return positions.to(DEVICE), table.to(DEVICE), [w.to(DEVICE) for w in weights]


def _eikonal_grads(encode, positions, table, weights):
    """Gradients of ``mean((|d sdf/dx| - 1)^2)`` (sdf = output 0) w.r.t. positions, table and every weight."""
    leaves = [t.detach().clone().requires_grad_() for t in (positions, table, *weights)]
    positions, table, *weights = leaves
    sdf = encode(positions, table, weights)[:, 0]
    (grad_x,) = torch.autograd.grad(sdf.sum(), positions, create_graph=True)
    eikonal = ((grad_x.norm(dim=1) - 1) ** 2).mean()
    return [grad_x.detach(), *torch.autograd.grad(eikonal, leaves)]


def _mixed_second_order(encode, positions, table, weights, seed: int):
    """d/d(positions, table, weights) of ``<C_x, dL/dx> + <C_t, dL/dtable> + sum_i <C_i, dL/dW_i>`` for a random
    first cotangent and random ``C``: every second-order path, including the table gradient's cotangent."""
    leaves = [t.detach().clone().requires_grad_() for t in (positions, table, *weights)]
    positions, table, *weights = leaves
    out = encode(positions, table, weights)
    generator = torch.Generator().manual_seed(seed)
    cotangent = torch.randn(out.shape, generator=generator).to(DEVICE)
    grads = torch.autograd.grad(out, leaves, cotangent, create_graph=True)
    total = sum((g * torch.randn(g.shape, generator=generator).to(DEVICE)).sum() for g in grads)
    return list(torch.autograd.grad(total, leaves))


def _compare(spec, grads_of, positions, table, weights):
    """Run ``grads_of`` with the triton backend and the float32 / float64 references; check the tolerance."""
    encode_triton = lambda p, t, w: encode_and_mlp(p, t, spec, w, backend="triton")  # noqa: E731
    encode_reference = lambda p, t, w: encode_and_mlp_reference(p, t, spec, w)  # noqa: E731
    actual = grads_of(encode_triton, positions, table, weights)
    expected = grads_of(encode_reference, positions, table, weights)
    exact = grads_of(encode_reference, positions, table.double(), [w.double() for w in weights])
    names = ["first", "positions", "table"] + [f"weights[{i}]" for i in range(len(weights))]
    for name, a, e, x in zip(names, actual, expected, exact):
        assert a.shape == e.shape and a.dtype == e.dtype, name
        assert torch.isfinite(a).all(), f"{name}: non-finite values (a NaN point poisoned the gradient)"
        err32 = (e.double() - x).abs().max().item()
        tolerance = 4 * err32 + 8 * UNIT_ROUNDOFF * x.abs().max().item()
        difference = (a.double() - e.double()).abs().max().item()
        assert difference <= tolerance, f"{name}: max |triton - reference| {difference:.3g} > {tolerance:.3g}"
    return actual


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's casts of NaN / 3e38 * scale
@pytest.mark.parametrize("hidden_layers", [1, 2])
@pytest.mark.parametrize("name", list(SPECS))
def test_eikonal_gradients_match_reference(name, hidden_layers):
    spec = SPECS[name]
    positions, table, weights = _inputs(spec, hidden_layers, seed=len(name) + hidden_layers)
    grad_x, d_positions, d_table, *d_weights = _compare(spec, _eikonal_grads, positions, table, weights)
    assert not grad_x[:2].any() and not d_positions[:2].any()  # the NaN / overflowing points: no gradient
    assert d_table.abs().max() > 0 and all(d.abs().max() > 0 for d in d_weights)  # the eikonal trains them all


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", ["hash3d-f2", "dense2d-f4"])
def test_all_second_order_paths_match_reference(name):
    spec = SPECS[name]
    positions, table, weights = _inputs(spec, 1, seed=3)

    def grads_of(encode, p, t, w):
        return [torch.zeros(())] + _mixed_second_order(encode, p, t, w, seed=4)

    _compare(spec, grads_of, positions, table, weights)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_first_order_backward_still_uses_fused_kernel_values():
    """Without create_graph the fused backward kernel runs; both paths give the same first-order gradients (up to
    summation order under the interpreter; on CUDA the fused kernel's TF32 dots, as in test_fused_mlp.py)."""
    spec = SPECS["hash2d-f2"]
    positions, table, weights = _inputs(spec, 1, seed=5)
    leaves = [t.clone().requires_grad_() for t in (positions, table, *weights)]
    plain = torch.autograd.grad(encode_and_mlp(leaves[0], leaves[1], spec, leaves[2:], backend="triton").sum(), leaves)
    graph = torch.autograd.grad(encode_and_mlp(leaves[0], leaves[1], spec, leaves[2:], backend="triton").sum(), leaves,
                                create_graph=True)
    assert not any(g.requires_grad for g in plain) and all(g.requires_grad for g in graph[1:])
    rtol, atol = (1e-5, 1e-5) if DEVICE == "cpu" else (1e-2, 5e-3)
    for a, b in zip(plain, graph):
        torch.testing.assert_close(a, b.detach(), rtol=rtol, atol=atol * b.abs().max().item())


# ------------------------------------------------------------------------------------- GPU tolerance table (CUDA)


@requires_cuda
@pytest.mark.parametrize("name", list(SPECS))
def test_cuda_eikonal_against_float64_reference(name):
    """Compiled kernels; the tolerance is measured against the float64 reference as on the CPU."""
    spec = SPECS[name]
    positions, table, weights = _inputs(spec, 2, seed=len(name) + 200)
    _compare(spec, _eikonal_grads, positions, table, weights)
