"""Static description of a multi-resolution grid encoding, with tiny-cuda-nn's level arithmetic."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import List, Literal, Tuple

import numpy as np

# tiny-cuda-nn's coherent_prime_hash factors (common_device.h); dimension 0 uses 1 so that
# x-neighbours of an even x land in adjacent table entries.
HASH_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
# tiny-cuda-nn 2.x's MAX_BASES (common_device.h, grid_index): the largest resolution r with r**d < 2**32, per d.
MAX_DENSE_RESOLUTION = (0x0, 0xFFFFFFFF, 0xFFFF, 0x659, 0xFF, 0x54, 0x28, 0x17, 0xF, 0xB, 0x9)
_DECIMAL_DIGITS = 60  # far beyond float32's 9 digits: no float32 midpoint lies this close to a log2 / exp2 value


def _nearest_float32(value: Decimal) -> float:
    """The float32 nearest to an (exactly given) value, ties to the even significand."""
    guess = np.float32(float(value))
    candidates = [guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))]
    best = min(candidates, key=lambda c: (abs(Decimal(float(c)) - value), int(c.view(np.uint32)) & 1))
    return float(best)


def float32_exp2(x: float) -> float:
    """Correctly rounded float32 ``2**x`` (what ``exp2f`` approximates), independent of the machine's libm."""
    if x == int(x):
        return float(np.float32(2.0**x))
    with localcontext() as context:
        context.prec = _DECIMAL_DIGITS
        return _nearest_float32((Decimal(x) * Decimal(2).ln()).exp())


def float32_log2(x: float) -> float:
    """Correctly rounded float32 ``log2(x)`` for ``x > 0`` (what ``std::log2(float)`` approximates)."""
    if x <= 0:
        raise ValueError(f"log2 needs a positive value, got {x}")
    mantissa, exponent = math.frexp(x)
    if mantissa == 0.5:  # a power of two: exact
        return float(exponent - 1)
    with localcontext() as context:
        context.prec = _DECIMAL_DIGITS
        return _nearest_float32(Decimal(x).ln() / Decimal(2).ln())


@dataclass(frozen=True)
class LevelIndexing:
    """One level's vertex -> row rule (tiny-cuda-nn 2.x ``grid_index``): ``index = combine_dim(v_dim * factor_dim)``
    in wrapping uint32 arithmetic (XOR when ``hashed``, sum otherwise), then ``index % table_size``."""

    resolution: int
    """Vertices per axis."""
    table_size: int
    """Rows of this level's table."""
    hashed: bool
    """Whether the XOR-prime hash is used."""
    factors: Tuple[int, ...]
    """Per dim: the hash prime (hashed) or the dense stride ``resolution**dim`` (all 0 for a dense grid whose
    ``resolution**d`` overflows uint32: tcnn reads index 0 there)."""


@dataclass(frozen=True)
class GridSpec:
    """Hyper-parameters of a multi-resolution grid encoding (tiny-cuda-nn ``Grid`` semantics).

    Level ``l`` has scale ``base_resolution * per_level_scale**l - 1`` (computed in float32 as
    ``exp2(l * log2(per_level_scale)) * base_resolution - 1``, each step correctly rounded) and ``ceil(scale) + 1``
    vertices per axis. A level is indexed densely while ``resolution**n_dims`` fits its table, and with the
    XOR-prime spatial hash above that (``grid_type="hash"``; tiny-cuda-nn 2.x rules, see ``level_indexing``).
    A level's table holds ``min(next_multiple(res**d, 8), 2**log2_hashmap_size)``
    entries for a hash grid and ``next_multiple(res**d, 8)`` for a dense grid.
    """

    n_levels: int = 16
    """Number of resolution levels L."""
    n_features_per_level: int = 2
    """Features per level F; the encoding outputs L*F values, level-major."""
    log2_hashmap_size: int = 19
    """log2 of the table size T per level (hash grids only)."""
    base_resolution: int = 16
    """Coarsest resolution N_min."""
    per_level_scale: float = 2.0
    """Growth factor b between levels."""
    n_dims: int = 3
    """Input dimensionality (2 for images, 3 for scenes)."""
    grid_type: Literal["hash", "dense"] = "hash"
    """``hash``: hash levels whose dense table would exceed T; ``dense``: every level dense."""

    @staticmethod
    def growth_factor(base_resolution: int, max_resolution: float, n_levels: int) -> float:
        """Per-level scale b such that level L-1 has resolution ``max_resolution`` (Instant-NGP's rule)."""
        if n_levels == 1:
            return 1.0
        return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))

    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features_per_level

    def level_scales(self) -> List[float]:
        """Float32 scale of every level: tcnn's ``exp2f(level * log2f(b)) * base_resolution - 1``, correctly rounded.

        Every step is one correctly rounded float32 operation (see :func:`float32_log2` and :func:`float32_exp2`),
        so the scales do not depend on the CPU or libm that configured the grid (numpy's SIMD ``exp2`` is one ulp
        off on AVX-512 machines at some levels), and every backend receives these same values.
        """
        return list(_level_scales(self.per_level_scale, self.base_resolution, self.n_levels))

    def level_resolutions(self) -> List[int]:
        """Vertices per axis of every level: ``ceil(scale) + 1``."""
        return [int(math.ceil(s)) + 1 for s in self.level_scales()]

    def level_sizes(self) -> List[int]:
        """Table entries of every level (tiny-cuda-nn's ``params_in_level``)."""
        max_params = np.iinfo(np.uint32).max // 2
        sizes = []
        for res in self.level_resolutions():
            dense = res**self.n_dims
            size = max_params if dense > max_params else dense
            size = (size + 7) // 8 * 8
            if self.grid_type == "hash":
                size = min(size, 1 << self.log2_hashmap_size)
            sizes.append(size)
        return sizes

    def level_is_hashed(self) -> List[bool]:
        """Whether each level uses the spatial hash (tiny-cuda-nn 2.x, see :meth:`level_indexing`)."""
        return [self.level_indexing(level).hashed for level in range(self.n_levels)]

    def level_indexing(self, level: int) -> "LevelIndexing":
        """How level ``level`` turns a vertex into a table row, as tiny-cuda-nn 2.x's ``grid_index``.

        Since tcnn commit f46b652 (2025-06, ``common_device.h``): while ``resolution <= MAX_BASES[d]`` (so that
        ``resolution**d`` fits in uint32) the dense stride runs over every dimension and the level is hashed iff
        ``grid_type == "hash"`` and ``table_size < resolution**d``; above it the stride is taken as ``0xFFFFFFFF``,
        so a hash grid hashes and a dense grid reads index 0 for every vertex (tcnn's behaviour, kept). tcnn 1.x
        stopped its stride loop at ``stride > table_size`` and let the uint32 stride wrap, which indexed some huge
        levels densely with dimensions dropped; that never happens for a level with ``resolution**d < 2**32``.
        """
        resolution, table_size = self.level_resolutions()[level], self.level_sizes()[level]
        if resolution <= MAX_DENSE_RESOLUTION[self.n_dims]:
            stride = resolution**self.n_dims
            strides = tuple(resolution**dim for dim in range(self.n_dims))
        else:
            stride, strides = 0xFFFFFFFF, (0,) * self.n_dims
        hashed = self.grid_type == "hash" and table_size < stride
        return LevelIndexing(resolution, table_size, hashed, HASH_PRIMES[: self.n_dims] if hashed else strides)

    def level_offsets(self) -> List[int]:
        """Start row of every level in the flat table, plus the total row count at the end."""
        offsets = [0]
        for size in self.level_sizes():
            offsets.append(offsets[-1] + size)
        return offsets

    @property
    def n_params(self) -> int:
        """Rows of the flat ``[n_params, F]`` table."""
        return self.level_offsets()[-1]

    def to_tcnn_config(self) -> dict:
        """The equivalent tiny-cuda-nn encoding config."""
        return {
            "otype": "HashGrid" if self.grid_type == "hash" else "DenseGrid",
            "n_levels": self.n_levels,
            "n_features_per_level": self.n_features_per_level,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
            "interpolation": "Linear",
        }


@functools.lru_cache(maxsize=256)
def _level_scales(per_level_scale: float, base_resolution: int, n_levels: int) -> Tuple[float, ...]:
    log2_b = np.float32(float32_log2(float(np.float32(per_level_scale))))
    base = np.float32(base_resolution)
    scales = []
    for level in range(n_levels):
        exponent = np.float32(np.float32(level) * log2_b)  # a float32 product, as tcnn's `level * log2_scale`
        scales.append(float(np.float32(np.float32(float32_exp2(float(exponent))) * base - np.float32(1.0))))
    return tuple(scales)


def hashgrid_spec(bound: float = 1.0, log2_hashmap_size: int = 19) -> GridSpec:
    """Multi-resolution hash grid, as NGPC/Instant-NGP: L=16, F=2, T=2^19, N_min=16, N_max=2048*bound."""
    return GridSpec(
        n_levels=16,
        n_features_per_level=2,
        log2_hashmap_size=log2_hashmap_size,
        base_resolution=16,
        per_level_scale=GridSpec.growth_factor(16, 2048 * bound, 16),
        grid_type="hash",
    )


def multires_densegrid_spec() -> GridSpec:
    """Multi-resolution dense grid: L=8, F=2, N_min=16, N_max=128 (b = 2**(3/7) ~= 1.346), every level dense.

    Why these sizes: the same base resolution and feature width as the hash grid, and as many levels as a dense
    grid can hold at a hash-grid-like memory budget: 3.6M rows x 2 features (~29 MB fp32), against the hash
    grid's 6.1M rows x 2 (~49 MB). The finest level (128^3 vertices) alone is 2.1M rows; one more level at
    b ~= 1.35 would add 5.0M.
    """
    return GridSpec(
        n_levels=8,
        n_features_per_level=2,
        log2_hashmap_size=19,
        base_resolution=16,
        per_level_scale=GridSpec.growth_factor(16, 128, 8),
        grid_type="dense",
    )


def lowres_densegrid_spec() -> GridSpec:
    """Low-resolution dense grid: one level of 128^3 vertices (127^3 cells), F=4.

    Why: a single coarse level is the cheapest encoding (8 lookups per point instead of 8*L), which is what the
    NGPC paper's third configuration isolates; 4 features per vertex (2.1M x 4 ~= 34 MB fp32) give the density
    MLP a comparable input width to the multi-level grids' 16-32.
    """
    return GridSpec(
        n_levels=1,
        n_features_per_level=4,
        log2_hashmap_size=19,
        base_resolution=128,
        per_level_scale=1.0,
        grid_type="dense",
    )
