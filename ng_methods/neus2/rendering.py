"""NeuS rendering as NeuS2's training kernel does it (``src/testbed_nerf.cu``, ``compute_loss_kernel_train_nerf``).

Per sample (SDF ``f`` and its gradient ``g`` at the sample, interval length ``dt``, unit ray direction ``d``, all
in the unit-cube coordinates the network sees):

* ``cos = d . g`` (the raw gradient: ``NORMAL_VECTORS_NORMALIZED 0``);
* ``iter_cos = -(relu(0.5 - 0.5 cos) (1 - r) + relu(-cos) r)`` with the cosine annealing ratio ``r`` (1 when
  ``anneal_end`` is 0, the DTU setting);
* the SDF at the section ends ``f -/+ iter_cos dt / 2``, their logistic CDFs ``Phi_s`` with ``s = exp(10 v)``
  (``v`` the learned variance, initialised to 0.3);
* ``alpha = clamp((Phi_prev - Phi_next + 1e-5) / (Phi_prev + 1e-5), 0, 1)``.

Weights are ``alpha_i T_i`` with the exclusive transmittance ``T_i = prod_{j<i} (1 - alpha_j)``; a ray stops at the
first sample whose ``T`` is below ``1e-4`` (that sample and the later ones are dropped, for colour and eikonal
alike). The occupancy grid is fed NeuS's logistic density ``s sigmoid(s f) (1 - sigmoid(s f))``
(``common_operation.cuh``, ``sdf_to_density_variance_buffer``), thresholded at ``min(0.1, mean)``.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ng_methods.kernels.volume_rendering import exclusive_sum_per_ray

ALPHA_EPS = 1e-5
"""The official ``(p + 1e-5) / (c + 1e-5)``."""
MIN_TRANSMITTANCE = 1e-4
"""The official early stop (``EPSILON``): samples behind ``T < 1e-4`` are not rendered."""


def inv_s_from_variance(variance: Float[Tensor, ""]) -> Float[Tensor, ""]:
    """NeuS2's sharpness ``s = exp(10 v)`` of the learned variance ``v``."""
    return torch.exp(10.0 * variance)


def neus_alpha(
    sdf: Float[Tensor, "n"],
    gradient: Float[Tensor, "n 3"],
    directions: Float[Tensor, "n 3"],
    dt: Float[Tensor, "n"],
    inv_s: Float[Tensor, ""],
    cos_anneal_ratio: float = 1.0,
) -> Float[Tensor, "n"]:
    """Opacity of each section from the SDF at its centre (see the module docstring); ``[n]`` in [0, 1]."""
    true_cos = (directions * gradient).sum(dim=-1)
    iter_cos = -(
        torch.relu(0.5 - 0.5 * true_cos) * (1.0 - cos_anneal_ratio) + torch.relu(-true_cos) * cos_anneal_ratio
    )
    half_step = iter_cos * dt * 0.5
    prev_cdf = torch.sigmoid((sdf - half_step) * inv_s)
    next_cdf = torch.sigmoid((sdf + half_step) * inv_s)
    return ((prev_cdf - next_cdf + ALPHA_EPS) / (prev_cdf + ALPHA_EPS)).clamp(0.0, 1.0)


def logistic_density(sdf: Float[Tensor, "*batch"], inv_s: Float[Tensor, ""]) -> Float[Tensor, "*batch"]:
    """NeuS's density ``phi_s(f) = s sigmoid(s f) (1 - sigmoid(s f))``, what NeuS2 writes into its density grid."""
    sigmoid = torch.sigmoid(sdf * inv_s)
    return inv_s * sigmoid * (1.0 - sigmoid)


def transmittance_from_alpha(
    alphas: Float[Tensor, "n"], ray_indices: Int[Tensor, "n"], n_rays: int
) -> Float[Tensor, "n"]:
    """Exclusive transmittance ``prod_{j<i} (1 - alpha_j)`` per ray over packed samples (sorted by ray, then t).

    Taken as ``exp(exclusive sum of log(1 - alpha))`` with ``1 - alpha`` clamped at 1e-10, so an opaque sample
    (alpha = 1) leaves ``T = 1e-10`` behind it instead of a zero with an infinite log-derivative.
    """
    log_survival = torch.log((1.0 - alphas).clamp(min=1e-10))
    return torch.exp(exclusive_sum_per_ray(log_survival, ray_indices, n_rays))


def neus_weights(
    alphas: Float[Tensor, "n"], ray_indices: Int[Tensor, "n"], n_rays: int
) -> tuple[Float[Tensor, "n"], Bool[Tensor, "n"]]:
    """Compositing weights ``alpha T`` and which samples are rendered (``T >= 1e-4``, the official early stop)."""
    transmittance = transmittance_from_alpha(alphas, ray_indices, n_rays)
    rendered = transmittance.detach() >= MIN_TRANSMITTANCE
    return alphas * transmittance * rendered.to(alphas.dtype), rendered
