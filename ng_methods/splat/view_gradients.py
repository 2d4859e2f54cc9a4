"""Screen-space densification statistics shared by the multi-view strategies (Gaussian-Flow, 4D-Rotor GS)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from torch import Tensor


def ndc_view_gradients(view: Dict[str, Any], key: str = "means2d", absgrad: bool = False) -> Optional[Tensor]:
    """``[C, N, 2]`` gradient of one rendered view's 2D means in gsplat's NDC units, or None before a backward.

    ``view`` is a rasterisation ``info`` dict (``width``, ``height``, ``n_cameras`` and the ``key`` tensor, whose
    ``.grad`` or, with ``absgrad``, ``.absgrad`` is read). Like gsplat's ``DefaultStrategy``, the pixel gradient is
    scaled by half the image size and by the number of cameras rendered together (their losses are averaged).
    """
    means2d = view[key]
    grads = means2d.absgrad if absgrad else means2d.grad
    if grads is None:
        return None
    grads = grads.clone()
    grads[..., 0] *= view["width"] / 2.0 * view["n_cameras"]
    grads[..., 1] *= view["height"] / 2.0 * view["n_cameras"]
    return grads
