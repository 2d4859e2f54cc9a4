"""Fused grid encoding + tiny MLP: the Triton kernels against ``encode_and_mlp_reference``, forward and backward.

Without CUDA the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set before Triton is imported), where
``tl.dot`` multiplies in full fp32; on a GPU fp32 weights use TF32 tensor cores, hence the looser CUDA tolerances.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from ng_methods.kernels.fused_mlp import encode_and_mlp, encode_and_mlp_reference, resolve_backend  # noqa: E402
from ng_methods.kernels.grid_encoding import GridSpec, grid_encode_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INTERPRETED = DEVICE == "cpu"
# (rtol, atol as a fraction of the reference's largest magnitude), per weight dtype.
TOL = {
    # Interpreter: fp32 products, only summation order (and atomics order) differs.
    torch.float32: (1e-5, 1e-5) if INTERPRETED else (1e-2, 5e-3),  # CUDA: TF32 operands (10-bit mantissa)
    # fp16 operands on both sides; the reference rounds gradients to fp16 at other points than the kernel.
    torch.float16: (1e-2, 2e-3) if INTERPRETED else (2e-2, 5e-3),
}

# Levels of 4, 6, 10 vertices are dense (64, 216, 1000 rows: the last two not powers of two, so `% T` sees uint32
# wrap-around for points outside [0, 1]); 15**3 > 1024 is hashed.
HASH = GridSpec(n_levels=4, n_features_per_level=2, log2_hashmap_size=10, base_resolution=4, per_level_scale=1.5)
HASH_2D = GridSpec(n_levels=3, n_features_per_level=2, log2_hashmap_size=6, base_resolution=4, per_level_scale=2.0,
                   n_dims=2)
MULTIRES_DENSE = GridSpec(n_levels=3, n_features_per_level=2, base_resolution=4, per_level_scale=1.7,
                          grid_type="dense")  # L*F = 6: padded to K = 16 for tl.dot
LOWRES_DENSE = GridSpec(n_levels=1, n_features_per_level=4, base_resolution=8, per_level_scale=1.0, grid_type="dense")
SPECS = {"hash": HASH, "multires_dense": MULTIRES_DENSE, "lowres_dense": LOWRES_DENSE}


def _positions(n: int, spec: GridSpec, seed: int = 0) -> torch.Tensor:
    """Points in [-0.25, 1.25]^d (outside the unit cube too), the last few far outside it: uint32 wrap-around,
    cells beyond int32 (CUDA's saturating conversion), and -1/6, -0.1, where ``fma(scale, x, 0.5)`` at the scales 3
    and 5 of ``HASH`` is a tiny negative number but ``scale * x + 0.5`` rounds to 0 (a different cell)."""
    generator = torch.Generator().manual_seed(seed)
    positions = torch.rand(n, spec.n_dims, generator=generator) * 1.5 - 0.25
    extreme = torch.tensor([[40.3, -17.1, 3.7], [-2.6, 1e3, 0.5], [-1 / 6, -0.1, 3e9], [3e9, -3e9, -0.1]])
    count = min(n, len(extreme))
    positions[n - count :] = extreme[:count, : spec.n_dims]
    return positions.to(DEVICE)


def _inputs(spec: GridSpec, widths, dtype=torch.float32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    table = (torch.rand(spec.n_params, spec.n_features_per_level, generator=generator) * 2 - 1).to(DEVICE)
    dims = [spec.n_output_dims, *widths]
    weights = [
        ((torch.rand(b, a, generator=generator) * 2 - 1) * (6 / a) ** 0.5).to(DEVICE, dtype)  # He-uniform
        for a, b in zip(dims[:-1], dims[1:])
    ]
    return table, weights


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    rtol, atol = TOL[dtype]
    scale = expected.abs().max().item() if expected.numel() else 1.0
    torch.testing.assert_close(
        actual.float(), expected.float(), rtol=rtol, atol=atol * scale, msg=lambda message: f"{what}: {message}"
    )


def _check(positions, table, spec, weights, dtype=torch.float32, seed: int = 1, cotangent_t: bool = False) -> None:
    """Forward and backward (random cotangent) of the triton backend against the reference."""
    leaves = [positions, table, *weights]
    wanted = [t for t in leaves if t.requires_grad]
    outputs = {}
    for backend in ("triton", "torch"):
        out = encode_and_mlp(positions, table, spec, weights, backend=backend)
        generator = torch.Generator().manual_seed(seed)
        cotangent = torch.randn(out.shape[::-1] if cotangent_t else out.shape, generator=generator).to(DEVICE)
        cotangent = cotangent.T if cotangent_t else cotangent  # a non-contiguous cotangent on request
        grads = torch.autograd.grad(out, wanted, cotangent) if out.numel() else [torch.zeros_like(t) for t in wanted]
        outputs[backend] = (out, grads)
    (out, grads), (expected, expected_grads) = outputs["triton"], outputs["torch"]
    assert out.shape == expected.shape and out.dtype == torch.float32
    _assert_close(out, expected, dtype, "output")
    names = [name for name, t in zip(["positions", "table"] + [f"weights[{i}]" for i in range(len(weights))], leaves)
             if t.requires_grad]
    for name, grad, expected_grad in zip(names, grads, expected_grads):
        assert grad.dtype == expected_grad.dtype and grad.shape == expected_grad.shape, name
        _assert_close(grad, expected_grad, dtype, f"d{name}")


def _trainable(table, weights):
    return table.requires_grad_(), [w.requires_grad_() for w in weights]


@pytest.mark.parametrize("hidden_layers", [1, 2])
@pytest.mark.parametrize("spec_name", list(SPECS))
def test_matches_reference(spec_name: str, hidden_layers: int) -> None:
    """Table and every weight get gradients; n = 131 is not a multiple of the block size."""
    spec = SPECS[spec_name]
    table, weights = _trainable(*_inputs(spec, [64] * hidden_layers + [16]))
    _check(_positions(131, spec), table, spec, weights)


@pytest.mark.parametrize("spec", [HASH, HASH_2D], ids=["3d", "2d"])
def test_position_gradients_and_strides(spec: GridSpec) -> None:
    """d/dpositions too, with strided positions and a transposed (non-contiguous) cotangent."""
    table, weights = _trainable(*_inputs(spec, [64, 16]))
    wide = torch.zeros(70, 2 * spec.n_dims, device=DEVICE)
    wide[:, ::2] = _positions(70, spec)
    positions = wide[:, ::2].requires_grad_()
    assert not positions.is_contiguous()
    _check(positions, table, spec, weights, cotangent_t=True)


def test_odd_widths_and_frozen_table() -> None:
    """Hidden 24 and output 3 are padded to 16-multiples; no table gradient when the table is frozen."""
    table, weights = _inputs(HASH, [24, 24, 3])
    _check(_positions(40, HASH), table, HASH, [w.requires_grad_() for w in weights])


def test_fp16_weights() -> None:
    table, weights = _trainable(*_inputs(HASH, [64, 16], dtype=torch.float16))
    _check(_positions(67, HASH), table, HASH, weights, dtype=torch.float16)


def test_empty_batch() -> None:
    table, weights = _trainable(*_inputs(HASH, [64, 16]))
    positions = torch.zeros(0, 3, device=DEVICE, requires_grad=True)
    out = encode_and_mlp(positions, table, HASH, weights, backend="triton")
    assert out.shape == (0, 16)
    grads = torch.autograd.grad(out.sum(), [positions, table, *weights])
    assert grads[0].shape == (0, 3) and all(not g.any() for g in grads)


def test_sum_backward_uses_broadcast_cotangent() -> None:
    """``out.sum().backward()`` hands the kernel a stride-0 cotangent."""
    table, weights = _trainable(*_inputs(LOWRES_DENSE, [64, 16]))
    positions = _positions(20, LOWRES_DENSE)
    encode_and_mlp(positions, table, LOWRES_DENSE, weights, backend="triton").sum().backward()
    expected = torch.autograd.grad(encode_and_mlp_reference(positions, table, LOWRES_DENSE, weights).sum(), table)[0]
    _assert_close(table.grad, expected, torch.float32, "dtable")


def test_reference_is_encoding_then_mlp() -> None:
    table, weights = _inputs(HASH, [64, 16])
    positions = _positions(10, HASH)
    hidden = torch.relu(grid_encode_reference(positions, table, HASH) @ weights[0].T)
    torch.testing.assert_close(encode_and_mlp_reference(positions, table, HASH, weights), hidden @ weights[1].T)


def test_dispatch_and_errors() -> None:
    table, weights = _inputs(HASH, [64, 16])
    positions = _positions(5, HASH)
    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("torch", DEVICE) == "torch"
    if DEVICE == "cpu":  # auto never picks the interpreter
        torch.testing.assert_close(encode_and_mlp(positions, table, HASH, weights),
                                   encode_and_mlp_reference(positions, table, HASH, weights))
    with pytest.raises(ValueError, match="unknown"):
        encode_and_mlp(positions, table, HASH, weights, backend="cuda")
    with pytest.raises(ValueError, match="hidden layers"):
        encode_and_mlp(positions, table, HASH, [torch.zeros(16, 8, device=DEVICE)], backend="triton")
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        encode_and_mlp(positions, table, HASH, [weights[0], weights[0]], backend="triton")
    with pytest.raises(ValueError, match="all float32 or all float16"):
        encode_and_mlp(positions, table, HASH, [weights[0], weights[1].half()], backend="triton")
