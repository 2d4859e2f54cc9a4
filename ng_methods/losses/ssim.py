"""Strided Gaussian-window SSIM, with the conventions of the S3IM reference code.

This is the SSIM that S3IM (Xie et al., ICCV 2023) applies to its virtual patches. It follows the official
``model_components/ssim.py`` of Madaoer/S3IM-Neural-Fields (itself adapted from Po-Hsun-Su/pytorch-ssim), including
its less common choices, which matter for reproducing the paper's numbers:

* **Window.** A separable Gaussian (sigma 1.5) whose 1-D profile is ``exp(-(x - k // 2)^2 / (2 sigma^2))`` for
  ``x = 0 .. k-1``, normalised to sum 1; the 2-D window is the outer product (so it also sums to 1). For an even
  kernel size the centre ``k // 2`` is *not* the middle of the window, so the window is asymmetric: for ``k = 4``
  the offsets are ``-2, -1, 0, +1`` and the peak sits at index 2.
* **Padding.** Zero padding of ``(k - 1) // 2`` on every side (1 for ``k = 4``, not ``k // 2``). Padded zeros count as
  pixel values inside a window (the window weights are not renormalised at the border).
* **Stride.** The window moves by ``stride`` pixels (``F.conv2d(..., stride=stride)``). With ``k = stride = 4`` and
  padding 1 the windows start at ``-1, 3, 7, ...``: they tile the image with a one-pixel shift, and when
  ``(size + 2 * padding - k)`` is not a multiple of the stride the last rows/columns are never covered. For a
  64-pixel side that is the last row/column (index 63), which therefore gets no gradient.
* **Statistics.** Per channel (grouped convolution), ``mu = w * x``, ``sigma^2 = w * x^2 - mu^2`` and
  ``sigma_12 = w * (x y) - mu_x mu_y``; ``C1 = 0.01^2``, ``C2 = 0.03^2`` (i.e. a data range of 1);
  the result is the mean of the SSIM map over batch, channels and window positions.

One deliberate difference: under ``torch.autocast`` the statistics are computed in float32 (half-precision inputs
are promoted), because ``E[x^2] - mu^2`` with ``C1 = 1e-4`` is meaningless in float16. Outside autocast and for
float32/float64 inputs the computation is the official one.
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

SSIM_C1 = 0.01**2
"""Luminance stabiliser ``(K1 * L)^2`` with ``K1 = 0.01`` and data range ``L = 1``."""
SSIM_C2 = 0.03**2
"""Contrast/structure stabiliser ``(K2 * L)^2`` with ``K2 = 0.03`` and data range ``L = 1``."""


def gaussian_window(
    kernel_size: int,
    sigma: float = 1.5,
    *,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device | str] = None,
) -> Float[Tensor, "kernel_size kernel_size"]:
    """The normalised 2-D Gaussian SSIM window of the reference code.

    The 1-D profile is centred on ``kernel_size // 2`` (asymmetric for even sizes) and normalised to sum 1; the
    2-D window is its outer product. Values are computed in float64 and then cast to ``dtype``.

    Example:
        >>> w = gaussian_window(4)
        >>> w.shape, int(w.sum(dim=0).argmax())
        (torch.Size([4, 4]), 2)
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    centre = kernel_size // 2
    profile = torch.tensor(
        [math.exp(-((x - centre) ** 2) / (2.0 * sigma**2)) for x in range(kernel_size)], dtype=torch.float64
    )
    profile = profile / profile.sum()
    window = torch.outer(profile, profile)
    return window.to(dtype=dtype or torch.get_default_dtype(), device=device)


def _no_autocast(device: torch.device):
    """A context that disables autocast on ``device`` (a no-op where autocast does not apply)."""
    if device.type in ("cuda", "cpu", "xpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def ssim(
    img1: Float[Tensor, "batch channels height width"],
    img2: Float[Tensor, "batch channels height width"],
    kernel_size: int = 4,
    stride: int = 4,
    sigma: float = 1.5,
    padding: Optional[int] = None,
    c1: float = SSIM_C1,
    c2: float = SSIM_C2,
    reduction: Literal["mean", "none"] = "mean",
    window: Optional[Float[Tensor, "kernel_size kernel_size"]] = None,
) -> Tensor:
    """Strided Gaussian-window SSIM between two image batches (reference-code conventions, see the module docs).

    Args:
        img1: First image batch, ``[B, C, H, W]``; for a loss, the prediction (gradients flow through both inputs).
        img2: Second image batch, same shape.
        kernel_size: Side of the square Gaussian window.
        stride: Step between windows (the ``conv2d`` stride).
        sigma: Standard deviation of the Gaussian window.
        padding: Zero padding on each side; ``None`` means the reference ``(kernel_size - 1) // 2``.
        c1: Luminance stabiliser.
        c2: Contrast/structure stabiliser.
        reduction: ``"mean"`` for the scalar mean of the SSIM map, ``"none"`` for the map itself,
            ``[B, C, H_out, W_out]`` with ``H_out = (H + 2 * padding - kernel_size) // stride + 1`` (same for W).
        window: Optional precomputed ``[kernel_size, kernel_size]`` window (e.g. a cached
            :func:`gaussian_window`); it is cast to the computation dtype and device. ``sigma`` is ignored if given.

    Returns:
        A scalar (``reduction="mean"``) or the SSIM map (``reduction="none"``). Identical images give 1.

    Example:
        >>> x = torch.rand(1, 3, 64, 64)
        >>> float(ssim(x, x))
        1.0
    """
    if img1.dim() != 4 or img1.shape != img2.shape:
        raise ValueError(
            f"ssim expects two [B, C, H, W] tensors of the same shape, got {tuple(img1.shape)} and {tuple(img2.shape)}"
        )
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if padding is None:
        padding = (kernel_size - 1) // 2
    height, width = img1.shape[-2:]
    if min(height, width) + 2 * padding < kernel_size:
        raise ValueError(
            f"a {kernel_size}x{kernel_size} window with padding {padding} does not fit in a {height}x{width} image"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")

    channels = img1.shape[1]
    with _no_autocast(img1.device):
        dtype = torch.promote_types(torch.promote_types(img1.dtype, img2.dtype), torch.float32)
        x = img1.to(dtype)
        y = img2.to(dtype)
        if window is None:
            window = gaussian_window(kernel_size, sigma, dtype=dtype, device=x.device)
        elif window.shape != (kernel_size, kernel_size):
            raise ValueError(f"window must be [{kernel_size}, {kernel_size}], got {tuple(window.shape)}")
        weight = window.to(dtype=dtype, device=x.device).expand(channels, 1, kernel_size, kernel_size)

        def filt(t: Tensor) -> Tensor:
            return F.conv2d(t, weight, padding=padding, stride=stride, groups=channels)

        mu1 = filt(x)
        mu2 = filt(y)
        mu1_sq = mu1 * mu1
        mu2_sq = mu2 * mu2
        mu1_mu2 = mu1 * mu2
        sigma1_sq = filt(x * x) - mu1_sq
        sigma2_sq = filt(y * y) - mu2_sq
        sigma12 = filt(x * y) - mu1_mu2

        ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return ssim_map.mean() if reduction == "mean" else ssim_map
