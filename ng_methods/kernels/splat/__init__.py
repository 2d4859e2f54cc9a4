"""3D Gaussian splatting rasterisation with backend dispatch.

* ``torch``: :func:`ng_methods.kernels.splat.reference.rasterize_reference`, pure PyTorch, any device/dtype,
  autograd-differentiable (gsplat 1.4.0 ``rasterization(packed=False, rasterize_mode="classic")`` semantics);
* ``gsplat``: ``gsplat.rasterization`` (CUDA only), imported lazily;
* ``auto``: ``gsplat`` for CUDA inputs when gsplat imports, else ``torch``.
"""

from __future__ import annotations

from typing import Dict, Literal, Optional, Tuple

from jaxtyping import Float
from torch import Tensor

from ng_methods.kernels.splat import reference
from ng_methods.kernels.splat.reference import rasterize_reference

Backend = Literal["auto", "torch", "gsplat"]
RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]

__all__ = ["Backend", "RenderMode", "rasterize", "rasterize_reference", "gsplat_available", "reference"]


def gsplat_available() -> bool:
    """True if ``gsplat.rasterization`` imports (it still needs CUDA tensors to run)."""
    try:
        from gsplat import rasterization  # noqa: F401
    except Exception:
        return False
    return True


def rasterize(
    means: Float[Tensor, "N 3"],
    quats: Optional[Float[Tensor, "N 4"]],
    scales: Optional[Float[Tensor, "N 3"]],
    opacities: Float[Tensor, "N"],
    colors: Float[Tensor, "..."],
    viewmats: Float[Tensor, "C 4 4"],
    Ks: Float[Tensor, "C 3 3"],
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Float[Tensor, "C D"]] = None,
    render_mode: RenderMode = "RGB",
    covars: Optional[Float[Tensor, "N 3 3"]] = None,
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    backend: Backend = "auto",
) -> Tuple[Float[Tensor, "C H W X"], Float[Tensor, "C H W 1"], Dict]:
    """Rasterise 3D Gaussians into ``C`` pinhole cameras (gsplat ``rasterization`` semantics, packed=False, classic).

    Args:
        means: world-space centres ``[N, 3]``.
        quats: rotations ``[N, 4]`` (w, x, y, z; need not be normalised), or None when ``covars`` is given.
        scales: linear (not log) scales ``[N, 3]``, or None when ``covars`` is given.
        opacities: ``[N]`` in [0, 1] (post-sigmoid).
        colors: ``[N, D]`` raw colours/features, or ``[N, K, 3]`` SH coefficients when ``sh_degree`` is set
            (``(sh_degree + 1)**2 <= K``; colour = ``max(SH(dir) + 0.5, 0)``, dir = mean - camera centre).
        viewmats: world-to-camera ``[C, 4, 4]``.  Ks: intrinsics ``[C, 3, 3]``.
        width, height: image size in pixels.
        near_plane, far_plane: depth culling.  eps2d: 2D covariance blur added to the diagonal.
        backgrounds: ``[C, D]`` added as ``T_final * bg`` (zeros for the depth channel).
        render_mode: "RGB" (X = D), "D"/"ED" (X = 1, accumulated / expected depth), "RGB+D"/"RGB+ED" (X = D + 1).
        covars: optional world covariances ``[N, 3, 3]`` instead of quats/scales.
        absgrad: also accumulate ``meta["means2d"].absgrad`` (sum over pixels of |dL/dmeans2d|) in backward.
        rasterize_mode: "classic", or "antialiased" (opacities times the eps2d compensation factor).
        backend: "torch" (pure PyTorch reference), "gsplat" (CUDA), or "auto" (gsplat on CUDA tensors, else torch).

    Example:
        >>> colors, alphas, meta = rasterize(means, quats, scales, opacities, rgb, viewmats, Ks, 64, 48)

    Returns:
        ``render_colors [C, H, W, X]``, ``render_alphas [C, H, W, 1]``, and a meta dict with at least
        ``radii [C, N]``, ``means2d [C, N, 2]``, ``depths [C, N]``, ``conics [C, N, 3]``.

    Non-finite input (``torch``; gsplat's CUDA kernels do not check, and what they do is undefined): a Gaussian with
    a NaN/inf mean is culled (radius 0) and so is invisible and gets no gradient; a NaN opacity makes it
    invisible (its alpha fails the ``>= 1/255`` test); a NaN/inf colour makes exactly the pixels it is composited
    into NaN (and the gradients of the Gaussians composited in those pixels), as the compositing maths does on any
    backend. Pixels it does not cover are never affected. Filter non-finite Gaussians upstream.
    """
    if backend == "auto":
        backend = "gsplat" if (means.is_cuda and gsplat_available()) else "torch"
    if backend == "gsplat":
        from gsplat import rasterization

        return rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree, packed=False,
            backgrounds=backgrounds, render_mode=render_mode, rasterize_mode=rasterize_mode, covars=covars,
            absgrad=absgrad, sparse_grad=False,
        )
    if backend != "torch":
        raise ValueError(f"unknown backend {backend!r}")
    return rasterize_reference(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree,
        backgrounds=backgrounds, render_mode=render_mode, covars=covars, absgrad=absgrad,
        rasterize_mode=rasterize_mode,
    )
