"""GridSpec level arithmetic: correctly rounded float32 scales pinned for the shipped presets (checked against mpmath,
a peer independent of numpy and the machine's libm), and the same scales reaching every backend."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import torch

from ng_methods.kernels.grid_encoding import grid_level_indices, hashgrid_spec, lowres_densegrid_spec
from ng_methods.kernels.grid_encoding import multires_densegrid_spec
from ng_methods.kernels.grid_encoding.spec import float32_exp2, float32_log2

# Correctly rounded float32 scales, written as float.hex (computed once with mpmath at 300 bits).
PINNED_SCALES = {
    "hashgrid": [
        "0x1.e000000000000p+3", "0x1.51c50a0000000p+4", "0x1.d8e0fe0000000p+4", "0x1.49cb440000000p+5",
        "0x1.cacd460000000p+5", "0x1.3e8a2a0000000p+6", "0x1.b9b8c80000000p+6", "0x1.31f96c0000000p+7",
        "0x1.a797fa0000000p+7", "0x1.2511100000000p+8", "0x1.955fde0000000p+8", "0x1.18497e0000000p+9",
        "0x1.8385f60000000p+9", "0x1.0bdb720000000p+10", "0x1.72402c0000000p+10", "0x1.ffbfea0000000p+10",
    ],
    "multires-densegrid": [
        "0x1.e000000000000p+3", "0x1.488cea0000000p+4", "0x1.bfbb020000000p+4", "0x1.3011460000000p+5",
        "0x1.9c02fc0000000p+5", "0x1.16a59c0000000p+6", "0x1.786a1a0000000p+6", "0x1.fbfffa0000000p+6",
    ],
    "lowres-densegrid": ["0x1.fc00000000000p+6"],
}
PRESETS = {
    "hashgrid": hashgrid_spec(),
    "multires-densegrid": multires_densegrid_spec(),
    "lowres-densegrid": lowres_densegrid_spec(),
}


def mpmath_float32(value) -> float:
    """The float32 nearest to an mpmath value (ties to the even significand)."""
    guess = np.float32(float(value))
    candidates = [guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))]
    return float(min(candidates, key=lambda c: (abs(mpmath.mpf(float(c)) - value), int(c.view(np.uint32)) & 1)))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_scales_are_pinned(name):
    assert [float.hex(s) for s in PRESETS[name].level_scales()] == PINNED_SCALES[name]


def test_scales_of_the_repro_levels():
    # numpy's float32 exp2 (AVX-512) gave 1071.4287109375 at hashgrid level 13; the correctly rounded value:
    assert hashgrid_spec().level_scales()[13] == 1071.4288330078125
    # ... which puts this point in cell row 120456 of level 13 (row 120455 with the 1-ulp-low scale).
    point = torch.tensor([[0.947799801826477, 0.36471205949783325, 0.4280623495578766]])
    assert grid_level_indices(point, hashgrid_spec(), 13)[0, 0].item() == 120456


def test_exp2_and_log2_are_correctly_rounded_against_mpmath():
    mpmath.mp.prec = 300
    rng = np.random.default_rng(0)
    exponents = np.concatenate([rng.uniform(-8, 16, 300), np.arange(16) * np.float32(0.46666661)]).astype(np.float32)
    for x in exponents.tolist():
        assert float32_exp2(x) == mpmath_float32(mpmath.power(2, mpmath.mpf(x))), x
    for x in rng.uniform(1.0, 4.0, 300).astype(np.float32).tolist() + [2.0, 0.5, 1.3819128274917603]:
        assert float32_log2(x) == mpmath_float32(mpmath.log(mpmath.mpf(x), 2)), x
    with pytest.raises(ValueError, match="positive"):
        float32_log2(0.0)


def test_every_backend_reads_the_spec_scales():
    from ng_methods.kernels.grid_encoding.reference import _levels

    spec = hashgrid_spec()
    assert [level.scale for level in _levels(spec)] == spec.level_scales()
    triton = pytest.importorskip("triton")  # noqa: F841  (the Triton module imports it)
    from ng_methods.kernels.fused_mlp.triton import _level_meta
    from ng_methods.kernels.grid_encoding.triton import level_constants

    assert level_constants(spec)[0] == spec.level_scales()
    meta_scales = _level_meta(spec, torch.device("cpu"))[0, : spec.n_levels].view(torch.float32)
    assert meta_scales.tolist() == spec.level_scales()
