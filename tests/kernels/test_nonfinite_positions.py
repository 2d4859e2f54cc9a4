"""Non-finite positions in the grid encodings: NaN features for that point (tiny-cuda-nn's), and no effect on any
gradient of the other points (tcnn would scatter the NaN into the table rows of its cell), on every backend."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from ng_methods.kernels.fused_mlp import encode_and_mlp  # noqa: E402
from ng_methods.kernels.grid_encoding import GridSpec, grid_encode  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SPEC = GridSpec(n_levels=3, n_features_per_level=2, log2_hashmap_size=8, base_resolution=4, per_level_scale=2.0)
BAD = torch.tensor([[float("nan"), 0.5, 0.5], [0.5, float("inf"), 0.5], [0.2, 0.3, -float("inf")], [3e38, 0.1, 0.1]])


def backends():
    return ["torch", "triton"] if _triton_usable() else ["torch"]


def _triton_usable() -> bool:
    try:
        from ng_methods.kernels.triton_fma import is_interpreter
    except ImportError:
        return False
    return DEVICE.type == "cuda" or is_interpreter()


def inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    good = torch.rand(40, 3, generator=generator)
    table = (torch.rand(SPEC.n_params, 2, generator=generator) * 2 - 1).to(DEVICE)
    weights = [(torch.randn(16, SPEC.n_output_dims, generator=generator) * 0.3).to(DEVICE),
               (torch.randn(4, 16, generator=generator) * 0.3).to(DEVICE)]
    return good.to(DEVICE), table, weights


def grads_of(function, positions, table, weights, cotangent):
    positions = positions.clone().requires_grad_()
    table = table.clone().requires_grad_()
    weights = [w.clone().requires_grad_() for w in weights]
    out = function(positions, table, weights)
    torch.autograd.backward(out, torch.where(out.isnan(), 0.0, cotangent))
    return out.detach(), positions.grad, table.grad, [w.grad for w in weights]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy warns on inf - inf
@pytest.mark.parametrize("fused", [False, True], ids=["grid_encode", "encode_and_mlp"])
@pytest.mark.parametrize("backend", backends())
def test_bad_points_are_nan_and_leave_every_gradient_alone(backend, fused):
    good, table, weights = inputs()
    positions = torch.cat([good[:20], BAD.to(DEVICE), good[20:]])
    is_bad = torch.zeros(len(positions), dtype=torch.bool, device=DEVICE)
    is_bad[20:24] = True

    def function(p, t, w):
        if fused:
            return encode_and_mlp(p, t, SPEC, w, backend=backend)
        return grid_encode(p, t, SPEC, backend=backend)

    width = 4 if fused else SPEC.n_output_dims
    cotangent = torch.randn(len(positions), width, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    out, pos_grad, table_grad, weight_grads = grads_of(function, positions, table, weights, cotangent)
    clean = grads_of(function, good, table, weights, cotangent[~is_bad])
    assert out[is_bad].isnan().any(dim=1).all() and not out[~is_bad].isnan().any()
    if fused:
        assert out[is_bad].isnan().all()
    torch.testing.assert_close(out[~is_bad], clean[0], rtol=1e-6, atol=1e-6)
    assert torch.isfinite(table_grad).all() and (pos_grad[is_bad] == 0).all()
    # The bad points contribute nothing: the gradients equal those of the good points alone (up to the order of
    # the atomic float32 sums on triton).
    torch.testing.assert_close(pos_grad[~is_bad], clean[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(table_grad, clean[2], rtol=1e-5, atol=1e-6)
    if fused:
        for got, expected in zip(weight_grads, clean[3]):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
