"""Double backward of the Triton grid encoding (``triton_second_order.py``) against the PyTorch reference's autograd.

Without CUDA the kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1``), so grids and batches are tiny.

Tolerances come from float32 rounding, not from observed errors. Every second-order output is a sum of ``N`` float32
products; its rounding error is at most ``N * u * B`` (``u = 2**-24``, ``B`` a bound on the sum of the magnitudes of
its terms, below). The Triton kernels and the float32 reference sum the same terms in other orders, so they may differ
by twice that. With ``M(x) = max |x|``, ``s_l`` the level scales, ``d`` dims, ``F`` features, ``G`` the first
backward's cotangent, ``U`` / ``V`` the cotangents of the table / position gradients:

* d/dG ``[n, l, f] = sum_c w_c U + dw_c T``: ``B = M(U) + 2 d s_l M(V) M(T)`` (``sum_c w_c = 1``,
  ``sum_c |dw_c/dfrac_k| = 2``), ``N = 2**d (d + 3) + 8``;
* d/dx ``[n, e]``: ``B = sum_l s_l F M(G) (2 M(U) + 4 (d - 1) s_l M(V) M(T))`` (``sum_c |d2w_c/dfrac_k dfrac_e| = 4``),
  ``N = L 2**d (F + d + 4)``;
* d/dtable ``[r, f] = sum over the (point, level, corner) hits of row r of dw_c G``: ``B = sum_hits s_l d M(V) M(G)``,
  ``N = hits_r + d + 4`` (per row, from the reference's corner rows).

The CUDA tests compare the compiled float32 kernels with the float64 reference instead (one float32 evaluation, but
the reference's position derivative passes float32 fractions: the same factor 2 is kept).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from ng_methods.kernels.grid_encoding import GridSpec, grid_encode, grid_encode_reference  # noqa: E402
from ng_methods.kernels.grid_encoding import triton as grid_triton  # noqa: E402
from ng_methods.kernels.grid_encoding.reference import grid_level_indices  # noqa: E402
from ng_methods.kernels.grid_encoding.triton import grid_encode_backward_triton, grid_encode_triton  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and not grid_triton._is_interpreted():
    pytest.skip("no CUDA, and the kernel module was imported without TRITON_INTERPRET=1", allow_module_level=True)
UNIT_ROUNDOFF = 2.0**-24
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SPECS = {  # hash and dense, 1-D to 3-D, F = 1, 2, 4; a few levels; levels dense and hashed
    "hash3d-f2": GridSpec(n_levels=3, n_features_per_level=2, log2_hashmap_size=8, base_resolution=4,
                          per_level_scale=2.0),
    "dense3d-f1": GridSpec(n_levels=2, n_features_per_level=1, base_resolution=3, per_level_scale=1.5,
                           grid_type="dense"),
    "hash2d-f4": GridSpec(n_levels=3, n_features_per_level=4, log2_hashmap_size=6, base_resolution=4,
                          per_level_scale=2.0, n_dims=2),
    "dense2d-f2": GridSpec(n_levels=2, n_features_per_level=2, base_resolution=5, per_level_scale=1.5, n_dims=2,
                           grid_type="dense"),
    "hash1d-f2": GridSpec(n_levels=2, n_features_per_level=2, log2_hashmap_size=3, base_resolution=4,
                          per_level_scale=2.0, n_dims=1),
}
N_POINTS = 150  # two programs of BLOCK = 128, the second partly masked


def _points(spec: GridSpec, n: int, seed: int) -> torch.Tensor:
    """Random points in [-0.25, 1.25]^d, a few on cell boundaries, one NaN, one inf and one overflowing (3e38)."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(n, spec.n_dims, generator=generator) * 1.5 - 0.25
    points[:4] = 0.5 / torch.tensor(spec.level_scales()[0])  # frac == 0 at level 0
    points[4, 0], points[5, -1], points[6, 0] = float("nan"), float("inf"), 3e38
    return points.to(DEVICE)


def _random(shape, seed: int) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1).to(DEVICE)


def _second_order(encode, positions, table, grad_out, gg_table, gg_positions):
    """``d/d(grad_out, positions, table)`` of ``<gg_positions, dL/dx> + <gg_table, dL/dtable>`` (None: not given)."""
    leaves = [t.detach().clone().requires_grad_() for t in (grad_out, positions, table)]
    grad_out, positions, table = leaves
    out = encode(positions, table)
    grad_positions, grad_table = torch.autograd.grad(out, (positions, table), grad_out, create_graph=True)
    total = 0.0
    if gg_positions is not None:
        total = total + (grad_positions * gg_positions).sum()
    if gg_table is not None:
        total = total + (grad_table * gg_table).sum()
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    return [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves)]


def _bounds(spec, positions, grad_out, table, gg_table, gg_positions):
    """Allowed |difference| of (d/dG ``[L*F]``, d/dx (scalar), d/dtable ``[n_params, 1]``) (module docstring)."""
    d, f, levels = spec.n_dims, spec.n_features_per_level, spec.n_levels
    scales = torch.tensor(spec.level_scales(), dtype=torch.float64)
    m_g, m_t = grad_out.abs().max().item(), table.abs().max().item()
    m_u = 0.0 if gg_table is None else gg_table.abs().max().item()
    m_v = 0.0 if gg_positions is None else gg_positions[positions.isfinite().all(dim=1)].abs().max().item()
    b_grad_out = (m_u + 2 * d * scales * m_v * m_t).repeat_interleave(f)
    n_grad_out = 2**d * (d + 3) + 8
    b_positions = (scales * f * m_g * (2 * m_u + 4 * (d - 1) * scales * m_v * m_t)).sum().item()
    n_positions = levels * 2**d * (f + d + 4)
    hits = torch.zeros(spec.n_params, dtype=torch.float64)
    magnitudes = torch.zeros(spec.n_params, dtype=torch.float64)
    for level, offset in enumerate(spec.level_offsets()[:-1]):
        rows = (grid_level_indices(positions.cpu(), spec, level) + offset).flatten()
        hits.index_add_(0, rows, torch.ones(len(rows), dtype=torch.float64))
        term = scales[level].item() * d * m_v * m_g
        magnitudes.index_add_(0, rows, torch.full((len(rows),), term, dtype=torch.float64))
    table_bound = 2 * (hits + d + 4) * UNIT_ROUNDOFF * magnitudes
    return (
        (2 * n_grad_out * UNIT_ROUNDOFF * b_grad_out).float().to(DEVICE),
        2 * n_positions * UNIT_ROUNDOFF * b_positions,
        table_bound[:, None].float().to(DEVICE),
    )


def _assert_within(actual, expected, bound, what):
    difference = (actual.double() - expected.double()).abs()
    excess = difference - torch.as_tensor(bound, dtype=torch.float64, device=difference.device)
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    assert (excess <= 0).all(), f"{what}: max |difference| {difference.max():.3g}, worst excess {excess.max():.3g}"


def _check(spec, cotangents: str, seed: int, reference_dtype=torch.float32):
    positions = _points(spec, N_POINTS, seed)
    table = _random((spec.n_params, spec.n_features_per_level), seed + 1)
    grad_out = _random((N_POINTS, spec.n_output_dims), seed + 2)
    gg_table = _random(table.shape, seed + 3) if "table" in cotangents else None
    gg_positions = _random(positions.shape, seed + 4) if "positions" in cotangents else None
    actual = _second_order(lambda p, t: grid_encode_triton(p, t, spec), positions, table, grad_out, gg_table,
                           gg_positions)
    as_ref = [None if t is None else t.to(reference_dtype) for t in (grad_out, table, gg_table, gg_positions)]
    expected = _second_order(lambda p, t: grid_encode_reference(p, t, spec), positions, as_ref[1], as_ref[0],
                             as_ref[2], as_ref[3])
    bounds = _bounds(spec, positions, grad_out, table, gg_table, gg_positions)
    for name, a, e, bound in zip(["d grad_out", "d positions", "d table"], actual, expected, bounds):
        assert a.shape == e.shape and a.dtype == torch.float32, name
        _assert_within(a, e, bound, name)
    return actual


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's casts of inf / 3e38 * scale
@pytest.mark.parametrize("cotangents", ["positions+table", "positions", "table"])
@pytest.mark.parametrize("name", list(SPECS))
def test_double_backward_matches_reference(name, cotangents):
    """All three second-order gradients, for both upstream cotangents together and each alone (eikonal: positions)."""
    d_grad_out, d_positions, d_table = _check(SPECS[name], cotangents, seed=len(name))
    nonfinite = slice(4, 7)
    assert not d_positions[nonfinite].any() and not d_grad_out[nonfinite].any()  # non-finite points: no gradient
    if "positions" in cotangents:
        assert d_table.abs().max() > 0  # what an eikonal loss trains the table with


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_eikonal_table_gradient_through_dispatch():
    """``grid_encode(backend="triton")``: an eikonal loss on d(feature sum)/dx trains the table like the reference."""
    spec = SPECS["hash3d-f2"]
    table = _random((spec.n_params, 2), 7)
    points = _points(spec, 40, seed=7)[7:]  # finite points

    def eikonal_grad(backend):
        p, t = points.clone().requires_grad_(), table.clone().requires_grad_()
        (gx,) = torch.autograd.grad(grid_encode(p, t, spec, backend=backend).sum(), p, create_graph=True)
        return torch.autograd.grad(((gx.norm(dim=1) - 1) ** 2).mean(), t)[0]

    actual, expected = eikonal_grad("triton"), eikonal_grad("torch")
    assert actual.abs().max() > 0
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_backward_function_validates_inputs_and_skips_unneeded_outputs():
    spec = SPECS["dense2d-f2"]
    positions, table = _points(spec, 10, 3)[7:], _random((spec.n_params, 2), 3)
    grad_out = _random((3, spec.n_output_dims), 4)
    grad_positions, grad_table = grid_encode_backward_triton(grad_out, positions, table, spec, need_table=False)
    assert grad_table is None and grad_positions.shape == (3, 2)
    with pytest.raises(ValueError, match="grad_out must be"):
        grid_encode_backward_triton(grad_out[:, :1], positions, table, spec)


def test_reference_float64_passes_gradgradcheck():
    """The spec itself: float64 double backward against finite differences (points away from cell boundaries)."""
    spec = GridSpec(n_levels=2, n_features_per_level=2, log2_hashmap_size=4, base_resolution=3, per_level_scale=2.0,
                    n_dims=2)  # level 0 dense, level 1 hashed; 32 rows
    positions = (torch.rand(4, 2, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1).double()
    table = torch.rand(spec.n_params, 2, generator=torch.Generator().manual_seed(1)).double()
    positions.requires_grad_(), table.requires_grad_()
    assert torch.autograd.gradgradcheck(lambda p, t: grid_encode_reference(p, t, spec), (positions, table))


# ------------------------------------------------------------------------------------- GPU tolerance table (CUDA)


@requires_cuda
@pytest.mark.parametrize("name", list(SPECS))
def test_cuda_double_backward_against_float64_reference(name):
    """Compiled fp32 kernels (tl.fma, hardware atomics) against the float64 reference, same bounds."""
    _check(SPECS[name], "positions+table", seed=len(name) + 100, reference_dtype=torch.float64)
