"""Volume-rendering compositing over packed samples, with backend dispatch.

All backends compute the same function (see ``reference.py``, nerfacc semantics; packed samples sorted by ray, then
``t``):

* ``torch``: the pure-PyTorch reference (any device and dtype, differentiable in everything);
* ``triton``: fused kernels from ``ng_methods.kernels.volume_rendering.triton`` (fp32/fp16/bf16, differentiable in
  ``sigmas`` / colours / weights, not in ``t_starts`` / ``t_ends``; CUDA, or CPU under ``TRITON_INTERPRET=1``);
* ``nerfacc``: nerfacc's CUDA kernels;
* ``auto``: ``triton`` for CUDA inputs it supports when Triton imports, else ``nerfacc`` on CUDA, else ``torch``.
  (:func:`render_visibility_from_density` keeps ``nerfacc`` for CUDA under ``auto``; ``triton`` on request.)

Triton is imported (and kernels compiled) only when the ``triton`` backend is first used.

Non-finite inputs (every backend, as nerfacc 0.5.2): plain IEEE arithmetic along each ray, and never anything
across rays. A density whose optical depth ``sigma * dt`` is ``+inf`` gives opacity 1 and weight ``T``, and the
rest of its ray ``T = 0`` and weight 0; a ``NaN`` one (or ``inf * 0``) gives ``NaN`` opacity and weight, and the
rest of its ray ``NaN`` transmittance and weight. ``NaN`` / ``inf`` colours or values make their own ray's sums
``NaN`` / ``inf`` (``NaN`` even at weight 0). Nothing is raised or sanitised: a ``NaN`` ray output points at the
ray whose field misbehaved.
"""

from __future__ import annotations

import functools
from typing import Literal, Optional, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ng_methods.kernels.volume_rendering import reference
from ng_methods.kernels.volume_rendering.reference import exclusive_sum_per_ray

Backend = Literal["auto", "torch", "triton", "nerfacc"]

__all__ = [
    "Backend",
    "composite",
    "render_weight_from_density",
    "render_visibility_from_density",
    "accumulate_along_rays",
    "exclusive_sum_per_ray",
    "triton_available",
]

_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@functools.lru_cache(maxsize=None)
def _load_triton():
    """``(module, None)`` or ``(None, why it is unavailable)``; imported once, on first use."""
    try:
        from ng_methods.kernels.volume_rendering import triton as module
    except Exception as error:  # no `triton`, or a Triton without a usable driver
        return None, f"{type(error).__name__}: {error}"
    return module, None


def triton_available() -> bool:
    """Whether the Triton compositing kernels (and Triton itself) import."""
    return _load_triton()[0] is not None


def _triton():
    module, why = _load_triton()
    if module is None:
        raise RuntimeError(f"backend='triton' needs a working Triton install ({why})")
    return module


def _resolve(backend: str, first: Tensor, others: Tuple[Optional[Tensor], ...] = (), t_grad: bool = False) -> str:
    """The concrete backend: ``auto`` -> triton (CUDA, supported dtypes, no t grads) / nerfacc (CUDA) / torch."""
    if backend in ("torch", "triton", "nerfacc"):
        return backend
    if backend != "auto":
        raise ValueError(f"unknown volume-rendering backend {backend!r}; expected auto, torch, triton or nerfacc")
    if not first.is_cuda:
        return "torch"
    dtypes_ok = all(x is None or x.dtype in _TRITON_DTYPES for x in (first, *others))
    if dtypes_ok and not t_grad and triton_available():
        return "triton"
    return "nerfacc"


def composite(
    t_starts: Float[Tensor, "n_samples"],
    t_ends: Float[Tensor, "n_samples"],
    sigmas: Float[Tensor, "n_samples"],
    rgbs: Float[Tensor, "n_samples c"],
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
    early_stop_eps: float = 0.0,
    backend: Backend = "auto",
) -> Tuple[
    Float[Tensor, "n_rays c"], Float[Tensor, "n_rays 1"], Float[Tensor, "n_rays 1"], Float[Tensor, "n_samples"]
]:
    """Composite packed samples along their rays in one pass.

    ``w_i = T_i * alpha_i`` (:func:`reference.render_weight_from_density`), with nerfacc's early-stop pipeline
    when ``early_stop_eps > 0``: samples with ``T_i >= early_stop_eps`` false (``T_i`` small or ``NaN``; those
    nerfacc's ``render_visibility_from_density`` drops) are left out, i.e. get weight 0, no optical depth and no
    gradient. ``0`` keeps every sample.

    Args:
        t_starts, t_ends, sigmas: ``[n_samples]``, packed (sorted by ray, then ``t``).
        rgbs: ``[n_samples, c]`` colours (any ``c``).
        ray_indices: ``[n_samples]`` int, non-decreasing; ``n_rays``: number of rays.

    Returns:
        ``(rgb, depth, accumulation, weights)``: ``rgb [n_rays, c] = sum_i w_i c_i`` (premultiplied, no
        background), ``depth [n_rays, 1] = sum_i w_i (t_start_i + t_end_i) / 2`` (*not* divided by the
        accumulation), ``accumulation [n_rays, 1] = sum_i w_i``, and the per-sample ``weights [n_samples]``.

    Non-finite inputs: module docstring. An infinite density makes its ray opaque at that sample (``rgb`` its
    colour times ``T``); a ``NaN`` density makes its ray's outputs ``NaN`` unless early stopping dropped it; a
    ``NaN`` / ``inf`` colour makes its ray's ``rgb`` channel ``NaN`` / ``inf`` (``NaN`` at weight 0, like nerfacc's
    ``accumulate_along_rays``). Other rays are never affected.
    """
    t_grad = t_starts.requires_grad or t_ends.requires_grad
    concrete = _resolve(backend, sigmas, (t_starts, t_ends, rgbs), t_grad=t_grad)
    if concrete == "triton":
        return _triton().composite(t_starts, t_ends, sigmas, rgbs, ray_indices, n_rays, early_stop_eps)
    if concrete == "nerfacc":
        import nerfacc

        def render(s):
            return nerfacc.render_weight_from_density(t_starts, t_ends, s, ray_indices=ray_indices, n_rays=n_rays)

        accumulate = functools.partial(nerfacc.accumulate_along_rays, ray_indices=ray_indices, n_rays=n_rays)
    else:

        def render(s):
            return reference.render_weight_from_density(t_starts, t_ends, s, ray_indices, n_rays)

        def accumulate(w, values):
            return reference.accumulate_along_rays(w, values, ray_indices, n_rays)

    weights = _early_stopped_weights(render, sigmas, early_stop_eps)
    rgb = accumulate(weights, rgbs)
    depth = accumulate(weights, ((t_starts + t_ends) / 2)[:, None])
    accumulation = accumulate(weights, None)
    return rgb, depth, accumulation, weights


def _early_stopped_weights(render, sigmas: Tensor, early_stop_eps: float) -> Tensor:
    """``[n_samples]`` weights of nerfacc's pipeline: drop samples with ``T < eps`` (or ``NaN``), render the rest.

    Dropping without compaction: the dropped samples' densities are set to 0 before rendering and their weights to 0
    after, so a ``NaN`` past early termination gives neither a ``NaN`` weight nor a ``NaN`` gradient. With
    non-negative densities the dropped samples are each ray's tail, so this equals masking the weights (what the
    Triton kernel does); only negative densities could tell the two apart.
    """
    if early_stop_eps <= 0:
        return render(sigmas)[0]
    with torch.no_grad():
        visible = render(sigmas)[1] >= early_stop_eps
    weights = render(torch.where(visible, sigmas, torch.zeros_like(sigmas)))[0]
    return torch.where(visible, weights, torch.zeros_like(weights))


def render_weight_from_density(
    t_starts: Float[Tensor, "n_samples"],
    t_ends: Float[Tensor, "n_samples"],
    sigmas: Float[Tensor, "n_samples"],
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
    backend: Backend = "auto",
) -> Tuple[Float[Tensor, "n_samples"], Float[Tensor, "n_samples"], Float[Tensor, "n_samples"]]:
    """Compositing weights, transmittance and opacity of packed samples (:func:`reference.render_weight_from_density`).

    All inputs ``[n_samples]`` (packed, ``ray_indices`` non-decreasing); returns ``(weights, transmittance,
    alphas)``, each ``[n_samples]``. Non-finite densities (module docstring): ``+inf`` at sample ``k`` gives
    ``alpha_k = 1``, ``w_k = T_k`` and ``T = w = 0`` for the rest of its ray; ``NaN`` gives ``alpha_k = w_k = NaN``
    and ``T = w = NaN`` for the rest of its ray (``T_k`` itself stays finite); other rays are unaffected.
    """
    t_grad = t_starts.requires_grad or t_ends.requires_grad
    concrete = _resolve(backend, sigmas, (t_starts, t_ends), t_grad=t_grad)
    if concrete == "triton":
        return _triton().render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays)
    if concrete == "nerfacc":
        import nerfacc

        return nerfacc.render_weight_from_density(t_starts, t_ends, sigmas, ray_indices=ray_indices, n_rays=n_rays)
    return reference.render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays)


def render_visibility_from_density(
    t_starts: Float[Tensor, "n_samples"],
    t_ends: Float[Tensor, "n_samples"],
    sigmas: Float[Tensor, "n_samples"],
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    backend: Backend = "auto",
):
    """Mask of samples that are still visible and opaque enough. See :func:`reference.render_visibility_from_density`.

    Inputs ``[n_samples]``; returns ``[n_samples]`` bool, ``T_i >= early_stop_eps`` and (if ``alpha_thre > 0``)
    ``alpha_i >= alpha_thre``. Comparisons with ``NaN`` are false: the samples after a ``NaN`` density are not
    visible (nor, with ``alpha_thre > 0``, the ``NaN`` sample itself); after a ``+inf`` one ``T = 0`` is not
    visible for ``early_stop_eps > 0``. Other rays are unaffected.
    """
    if backend == "triton":
        return _triton().render_visibility_from_density(
            t_starts, t_ends, sigmas, ray_indices, n_rays, early_stop_eps=early_stop_eps, alpha_thre=alpha_thre
        )
    if backend == "nerfacc" or (backend == "auto" and sigmas.is_cuda):
        import nerfacc

        return nerfacc.render_visibility_from_density(
            t_starts, t_ends, sigmas, ray_indices=ray_indices, n_rays=n_rays,
            early_stop_eps=early_stop_eps, alpha_thre=alpha_thre,
        )
    if backend not in ("auto", "torch"):
        raise ValueError(f"unknown volume-rendering backend {backend!r}; expected auto, torch, triton or nerfacc")
    return reference.render_visibility_from_density(
        t_starts, t_ends, sigmas, ray_indices, n_rays, early_stop_eps=early_stop_eps, alpha_thre=alpha_thre
    )


def accumulate_along_rays(
    weights: Float[Tensor, "n_samples"],
    values: Float[Tensor, "n_samples c"] | None,
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
    backend: Backend = "auto",
) -> Float[Tensor, "n_rays c"]:
    """Per-ray weighted sums of ``values`` (or of the weights when ``values`` is None).

    ``weights [n_samples]``, ``values [n_samples, c]`` or None -> ``[n_rays, c]`` (``c = 1`` for None). The
    ``triton`` backend is a segmented reduction and needs ``ray_indices`` sorted (packed samples); the others
    accept any order. Non-finite weights or values follow nerfacc's ``accumulate_along_rays`` (``sum_i w_i v_i``
    in IEEE arithmetic): they make that ray's channel ``NaN`` / ``inf`` (``NaN`` for ``0 * inf`` and ``inf - inf``
    too), and only that ray's.
    """
    concrete = _resolve(backend, weights, (values,))
    if concrete == "triton":
        return _triton().accumulate_along_rays(weights, values, ray_indices, n_rays)
    if concrete == "nerfacc":
        import nerfacc

        return nerfacc.accumulate_along_rays(weights, values, ray_indices=ray_indices, n_rays=n_rays)
    return reference.accumulate_along_rays(weights, values, ray_indices, n_rays)
