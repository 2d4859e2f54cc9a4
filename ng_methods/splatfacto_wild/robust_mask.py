"""Splatfacto-W's transient handling: the robust (RobustNeRF-style) loss mask and the alpha (background) loss.

Robust mask (official ``robust_mask``): per-pixel L1 errors, with the top ``never_mask_upper`` fraction of rows
zeroed (they are mostly sky, explained by the background model, and never masked). The fraction of pixels to mask
grows with the current loss: ``fraction = lo + (hi - lo) * (L - L_min) / (L_max - L_min)`` where ``L`` is the mean
error, ``L_min`` the lowest seen so far and ``L_max`` the highest since the last reset (every ``reset_interval``
steps). Inliers have an error at or below the ``1 - fraction`` quantile; a pixel is kept when it is an inlier or
when more than ``neighbour_threshold`` of its 5x5 neighbourhood are inliers (so isolated high-error pixels such as
fine texture are not dropped, only coherent blobs such as people and boats).

Alpha loss (official ``alpha_loss``): pixels the background model already explains (``mean |gt - bg| < 0.003``),
kept only where a 3x3 box filter of that test is > 0.6 (so high-frequency content is not penalised), should be
transparent: ``weight * mean(alpha[selected])``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor


def box_filter(image: Float[Tensor, "H W 1"], size: int) -> Float[Tensor, "H W 1"]:
    """Mean over a ``size x size`` window, zero padded ("same" output size, as the official conv2d)."""
    kernel = torch.full((1, 1, size, size), 1.0 / (size * size), device=image.device, dtype=image.dtype)
    return F.conv2d(image.permute(2, 0, 1)[None], kernel, padding="same")[0].permute(1, 2, 0)


@dataclass
class RobustMaskState:
    """Running loss range used to turn the current loss into a masked fraction (not checkpointed, as upstream)."""

    max_loss: float = 0.0
    min_loss: float = 1e10


@torch.no_grad()
def robust_mask(
    errors: Float[Tensor, "H W C"],
    state: RobustMaskState,
    step: int,
    mask_fraction_range: Tuple[float, float] = (0.0, 0.4),
    never_mask_upper: float = 0.4,
    reset_interval: int = 6000,
    neighbour_threshold: float = 0.4,
    window: int = 5,
) -> Float[Tensor, "H W 1"]:
    """1 for pixels kept in the loss, 0 for suspected transients. ``errors`` is not modified; ``state`` is updated."""
    errors = errors.detach().clone()
    errors[: int(errors.shape[0] * never_mask_upper)] = 0.0
    loss = float(errors.mean())
    if loss > state.max_loss or step % reset_interval == 0:
        state.max_loss = loss
    state.min_loss = min(state.min_loss, loss)

    lo, hi = mask_fraction_range
    fraction = (loss - state.min_loss) / ((state.max_loss - state.min_loss) + 1e-6) * (hi - lo) + lo
    per_pixel = errors.mean(dim=-1, keepdim=True)
    # torch.quantile has an input-size limit; kthvalue gives the same order statistic for any image size.
    threshold = _quantile(per_pixel.flatten(), 1.0 - fraction)
    inlier = (per_pixel <= threshold).to(errors.dtype)
    has_inlier_neighbours = (box_filter(inlier, window) > neighbour_threshold).to(errors.dtype)
    return ((inlier + has_inlier_neighbours) > 1e-3).to(errors.dtype)


def _quantile(values: Float[Tensor, "n"], q: float) -> Tensor:
    """Linear-interpolation quantile (``torch.quantile``'s default) without its 16M-element limit."""
    q = min(max(q, 0.0), 1.0)
    n = values.numel()
    position = q * (n - 1)
    below = int(position)
    above = min(below + 1, n - 1)
    sorted_values = torch.sort(values).values
    return torch.lerp(sorted_values[below], sorted_values[above], position - below)


def alpha_loss_pixels(
    gt: Float[Tensor, "H W 3"], background: Float[Tensor, "H W 3"], threshold: float = 0.003,
    window: int = 3, keep_above: float = 0.6,
) -> Bool[Tensor, "H W 1"]:
    """Pixels where the ground truth matches the background (after the box-filter cleanup): they should be empty."""
    matches = ((gt - background).abs().mean(dim=-1, keepdim=True) < threshold).to(gt.dtype)
    return box_filter(matches, window) > keep_above


def alpha_loss(
    alpha: Float[Tensor, "H W 1"], gt: Float[Tensor, "H W 3"], background: Float[Tensor, "H W 3"],
    weight: float = 0.15,
) -> Tensor:
    """``weight * mean(alpha)`` over :func:`alpha_loss_pixels`; 0 when no pixel qualifies."""
    selected = alpha_loss_pixels(gt.detach(), background.detach())
    if not bool(selected.any()):
        return alpha.new_zeros(())
    return weight * alpha[selected].mean()
