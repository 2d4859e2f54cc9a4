"""``GridEncoding``: a trainable multi-resolution grid (hash / dense) as an ``nn.Module``.

The module owns one ``[n_params, F]`` table parameter whatever the backend, so checkpoints are interchangeable
between the PyTorch reference, the Triton kernels and tiny-cuda-nn (whose flat parameter vector is this table,
row-major).
"""

from __future__ import annotations

import warnings

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ng_methods.kernels.grid_encoding import Backend, GridSpec, grid_encode, resolve_backend, tcnn_unavailable_reason


class GridEncoding(nn.Module):
    """Multi-resolution grid encoding with tiny-cuda-nn semantics (see ``ng_methods.kernels.grid_encoding``).

    Args:
        spec: levels, features, table sizes and resolutions.
        backend: ``auto`` (Triton on CUDA when available, else the PyTorch reference), ``torch``, ``triton`` or
            ``tcnn``. ``tcnn`` falls back to the reference, with one warning, where tinycudann cannot run (not
            installed, CPU input, float64 table, a config it rejects).
        init_scale: the table starts uniform in ``[-init_scale, init_scale]`` (tiny-cuda-nn uses 1e-4).
    """

    def __init__(self, spec: GridSpec, backend: Backend = "auto", init_scale: float = 1e-4) -> None:
        super().__init__()
        resolve_backend(backend, "cpu")  # rejects unknown names at construction time
        self.spec = spec
        self.backend = backend
        self.table = nn.Parameter(
            torch.empty(spec.n_params, spec.n_features_per_level).uniform_(-init_scale, init_scale)
        )
        self._warned_tcnn_fallback = False

    @property
    def n_output_dims(self) -> int:
        """Features per point: ``n_levels * n_features_per_level``."""
        return self.spec.n_output_dims

    def forward(self, positions: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch l*f"]:
        """Encode points (any leading batch shape) into ``[*batch, L*F]`` features in the table's dtype."""
        if positions.shape[-1] != self.spec.n_dims:
            raise ValueError(f"positions must be [..., {self.spec.n_dims}], got {tuple(positions.shape)}")
        batch_shape = positions.shape[:-1]
        flat_positions = positions.reshape(-1, self.spec.n_dims)
        encoded = grid_encode(flat_positions, self.table, self.spec, self._backend_for(positions))
        return encoded.reshape(*batch_shape, self.n_output_dims)

    def _backend_for(self, positions: Tensor) -> Backend:
        if self.backend != "tcnn":
            return self.backend
        why = tcnn_unavailable_reason(positions.device, self.table.dtype, self.spec)
        if why is None:
            return "tcnn"
        if not self._warned_tcnn_fallback:
            warnings.warn(f"GridEncoding(backend='tcnn'): {why}; using the PyTorch reference instead.", stacklevel=3)
            self._warned_tcnn_fallback = True
        return "torch"

    def extra_repr(self) -> str:
        spec = self.spec
        return (
            f"{spec.grid_type}, levels={spec.n_levels}, features={spec.n_features_per_level}, dims={spec.n_dims}, "
            f"resolutions={spec.level_resolutions()[0]}..{spec.level_resolutions()[-1]}, rows={spec.n_params}, "
            f"backend={self.backend}"
        )
