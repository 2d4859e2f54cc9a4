"""Multi-resolution grid encoding (tiny-cuda-nn ``Grid`` semantics) with backend dispatch.

Backends compute the same function (see ``reference.py``) on the same flat ``[n_params, F]`` table:

* ``torch``: the pure-PyTorch reference (any device, float64 capable, differentiable any number of times);
* ``triton``: fused GPU kernels from ``ng_methods.kernels.grid_encoding.triton`` (CUDA only), twice differentiable:
  the double backward (eikonal losses: d/dtable of a loss on d out/d positions) is Triton too; a third derivative
  raises;
* ``tcnn``: tiny-cuda-nn's native encoding run on *our* table (CUDA, fp32/fp16 tables);
* ``auto``: ``triton`` for CUDA inputs when that module imports, else ``torch``.

Nothing is compiled or imported from Triton / tinycudann until a backend that needs it is used.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Callable, Literal, Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ng_methods.kernels.grid_encoding.reference import (
    check_grid_inputs,
    grid_encode_reference,
    grid_level_indices,
)
from ng_methods.kernels.grid_encoding.spec import (
    HASH_PRIMES,
    GridSpec,
    hashgrid_spec,
    lowres_densegrid_spec,
    multires_densegrid_spec,
)

Backend = Literal["auto", "torch", "triton", "tcnn"]
ConcreteBackend = Literal["torch", "triton", "tcnn"]

__all__ = [
    "Backend",
    "GridSpec",
    "HASH_PRIMES",
    "grid_encode",
    "grid_encode_reference",
    "grid_encode_tcnn",
    "grid_level_indices",
    "hashgrid_spec",
    "lowres_densegrid_spec",
    "multires_densegrid_spec",
    "resolve_backend",
    "tcnn_unavailable_reason",
    "triton_available",
]

_TCNN_DTYPES = (torch.float32, torch.float16)


@functools.lru_cache(maxsize=None)
def _load_triton() -> Tuple[Optional[Callable], Optional[str]]:
    """``(grid_encode_triton, None)``, or ``(None, why it is unavailable)``; imported once, on first use."""
    try:
        from ng_methods.kernels.grid_encoding.triton import grid_encode_triton
    except Exception as error:  # a missing module, a missing `triton`, or a Triton without a usable driver
        return None, f"{type(error).__name__}: {error}"
    return grid_encode_triton, None


def triton_available() -> bool:
    """Whether ``ng_methods.kernels.grid_encoding.triton`` (and Triton itself) imports."""
    return _load_triton()[0] is not None


def resolve_backend(backend: Backend, device: torch.device | str) -> ConcreteBackend:
    """The backend ``grid_encode`` runs for inputs on ``device``: ``auto`` becomes ``triton`` or ``torch``."""
    if backend in ("torch", "triton", "tcnn"):
        return backend
    if backend != "auto":
        raise ValueError(f"unknown grid-encoding backend {backend!r}; expected auto, torch, triton or tcnn")
    return "triton" if torch.device(device).type == "cuda" and triton_available() else "torch"


def grid_encode(
    positions: Float[Tensor, "n d"],
    table: Float[Tensor, "n_params f"],
    spec: GridSpec,
    backend: Backend = "auto",
) -> Float[Tensor, "n l*f"]:
    """Multi-resolution grid encoding of ``positions`` with the flat ``table`` (see ``grid_encode_reference``).

    Args:
        positions: ``[n, d]`` points, nominally in ``[0, 1]^d``.
        table: ``[spec.n_params, F]`` flat table, level ``l`` at rows ``spec.level_offsets()[l]:[l+1]``.
        spec: grid hyper-parameters.
        backend: ``auto``, ``torch``, ``triton`` or ``tcnn`` (see the module docstring).

    Returns:
        ``[n, L*F]`` level-major features in ``table.dtype``. Differentiable w.r.t. ``positions`` and ``table``;
        twice on ``torch``, ``triton`` and ``tcnn`` (tcnn: only the terms reached through d/dpositions, see
        ``grid_encode_tcnn``), e.g. for eikonal losses.

    Non-finite input: a NaN or infinite coordinate (or one whose ``scale * x`` overflows float32) gives NaN
    features at the affected levels, as tiny-cuda-nn; on ``torch`` and ``triton`` it adds nothing to the table
    gradient and gets a zero position gradient, so it cannot poison other points (``tcnn`` itself scatters NaN).
    """
    check_grid_inputs(positions, table, spec)
    concrete = resolve_backend(backend, positions.device)
    if concrete == "torch":
        return grid_encode_reference(positions, table, spec)
    if concrete == "triton":
        grid_encode_triton, why = _load_triton()
        if grid_encode_triton is None:
            raise RuntimeError(
                "backend='triton' needs ng_methods.kernels.grid_encoding.triton.grid_encode_triton and a working "
                f"Triton install, but importing it failed ({why}); use backend='auto' or 'torch'."
            )
        return grid_encode_triton(positions, table, spec)
    return grid_encode_tcnn(positions, table, spec)


# --------------------------------------------------------------------------------------------------- tiny-cuda-nn


@functools.lru_cache(maxsize=None)
def _tcnn_import_error() -> Optional[str]:
    if importlib.util.find_spec("tinycudann") is None:
        return "tinycudann is not installed"
    try:
        import tinycudann  # noqa: F401  (raises EnvironmentError without a usable CUDA device)
    except Exception as error:
        return f"importing tinycudann failed ({type(error).__name__}: {error})"
    return None


def _device_index(device: torch.device | str) -> int:
    device = torch.device(device)
    return device.index if device.index is not None else torch.cuda.current_device()


def tcnn_unavailable_reason(
    device: torch.device | str, dtype: torch.dtype, spec: Optional[GridSpec] = None
) -> Optional[str]:
    """Why the ``tcnn`` backend cannot encode on ``device`` with a ``dtype`` table, or None when it can.

    With ``spec``, tcnn's native encoding is also built (once, cached) so that a config tcnn rejects is reported here
    instead of failing mid-forward.
    """
    if torch.device(device).type != "cuda":
        return f"tinycudann only runs on CUDA tensors, got {torch.device(device)}"
    if dtype not in _TCNN_DTYPES:
        return f"tinycudann grids hold float32 or float16 parameters, got a {dtype} table"
    why = _tcnn_import_error()
    if why is None and spec is not None:
        why = _tcnn_native_encoding(spec, dtype, _device_index(device))[1]
    return why


@functools.lru_cache(maxsize=None)
def _tcnn_native_encoding(
    spec: GridSpec, dtype: torch.dtype, device_index: int
) -> Tuple[Optional[tuple], Optional[str]]:
    """``((native_module, loss_scale, batch_granularity), None)`` for ``spec``, or ``(None, why it failed)``.

    Built once per spec/dtype/GPU. The native module holds no parameters of ours: tcnn's ``fwd``/``bwd`` take the
    parameter tensor on every call, so we pass it our table and drop the parameters ``tcnn.Encoding`` allocated.
    """
    try:
        import tinycudann as tcnn

        with torch.cuda.device(device_index):
            encoding = tcnn.Encoding(spec.n_dims, spec.to_tcnn_config(), dtype=dtype)
    except Exception as error:
        return None, f"building tinycudann's encoding failed ({type(error).__name__}: {error})"
    n_tcnn_params, n_params = encoding.params.numel(), spec.n_params * spec.n_features_per_level
    if n_tcnn_params != n_params or encoding.n_output_dims != spec.n_output_dims:
        return None, (
            f"tinycudann's grid layout disagrees with GridSpec: {n_tcnn_params} params / {encoding.n_output_dims} "
            f"outputs, expected {n_params} / {spec.n_output_dims}"
        )
    native_bindings = getattr(tcnn.modules, "_C", None)
    granularity = 256  # tcnn's BATCH_SIZE_GRANULARITY, for bindings that do not expose it
    if hasattr(native_bindings, "batch_size_granularity"):
        granularity = int(native_bindings.batch_size_granularity())
    return (encoding.native_tcnn_module, float(encoding.loss_scale), granularity), None


def grid_encode_tcnn(
    positions: Float[Tensor, "n d"], table: Float[Tensor, "n_params f"], spec: GridSpec
) -> Float[Tensor, "n l*f"]:
    """tiny-cuda-nn's grid encoding evaluated on our ``[n_params, F]`` table (tcnn's flat params, row-major).

    Gradients reach ``table`` and ``positions`` through tcnn's autograd function, including its partial double
    backward (d(dL/dx)/dtable, as used by eikonal losses). Raises ``RuntimeError`` when tcnn cannot run.
    """
    check_grid_inputs(positions, table, spec)
    why = tcnn_unavailable_reason(positions.device, table.dtype, spec)
    if why is not None:
        raise RuntimeError(f"backend='tcnn' unavailable: {why}")
    import tinycudann as tcnn

    native, _ = _tcnn_native_encoding(spec, table.dtype, _device_index(positions.device))
    native_module, loss_scale, granularity = native
    n_points = positions.shape[0]
    if n_points == 0:
        return table.new_zeros(0, spec.n_output_dims)
    padded = (n_points + granularity - 1) // granularity * granularity  # tcnn needs whole batch granules
    inputs = torch.nn.functional.pad(positions.to(torch.float32), [0, 0, 0, padded - n_points]).contiguous()
    # tcnn's autograd function is `_module_function` in current releases and `_module_func` in old ones.
    module_function = getattr(tcnn.modules, "_module_function", None) or tcnn.modules._module_func
    encoded = module_function.apply(native_module, inputs, table.contiguous().view(-1), loss_scale)
    return encoded[:n_points, : spec.n_output_dims]
