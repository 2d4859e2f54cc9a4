"""Static description of a multi-resolution grid encoding, with tiny-cuda-nn's level arithmetic."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Literal

import numpy as np

# tiny-cuda-nn's coherent_prime_hash factors (common_device.h); dimension 0 uses 1 so that
# x-neighbours of an even x land in adjacent table entries.
HASH_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)


@dataclass(frozen=True)
class GridSpec:
    """Hyper-parameters of a multi-resolution grid encoding (tiny-cuda-nn ``Grid`` semantics).

    Level ``l`` has scale ``base_resolution * per_level_scale**l - 1`` (computed in float32 as
    ``exp2(l * log2(per_level_scale)) * base_resolution - 1``) and ``ceil(scale) + 1`` vertices per axis.
    A level is indexed densely while ``resolution**n_dims`` fits its table, and with the XOR-prime spatial
    hash above that (``grid_type="hash"``). A level's table holds ``min(next_multiple(res**d, 8), 2**log2_hashmap_size)``
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
        """Float32 scale of every level, exactly as tiny-cuda-nn computes it."""
        # tcnn takes log2 of the float32-rounded growth factor (std::log2 on a float), then rounds to float32.
        log2_b = np.float32(math.log2(float(np.float32(self.per_level_scale))))
        return [
            float(np.exp2(np.float32(level) * log2_b, dtype=np.float32) * np.float32(self.base_resolution) - np.float32(1.0))
            for level in range(self.n_levels)
        ]

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
        """Whether a level uses the spatial hash (its dense index would overflow the table)."""
        return [
            self.grid_type == "hash" and res**self.n_dims > size
            for res, size in zip(self.level_resolutions(), self.level_sizes())
        ]

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
