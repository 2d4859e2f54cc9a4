"""Initial Gaussians for the splat base: from SfM seed points when the dataparser has them, else uniform random.

Device-free (Splatfacto's own initialisation hard-codes the CUDA device); the trainer moves the model afterwards.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import Parameter

from ng_methods.splat.sh import RGB2SH, num_sh_bases


def mean_knn_distance(points: Tensor, k: int = 3) -> Tensor:
    """Mean distance of each point to its ``k`` nearest neighbours ``[N]`` (the 3DGS initial scale)."""
    from sklearn.neighbors import NearestNeighbors

    x = points.detach().cpu().numpy()
    k_eff = min(k + 1, len(x))
    distances, _ = NearestNeighbors(n_neighbors=k_eff).fit(x).kneighbors(x)
    mean = distances[:, 1:].mean(axis=1) if k_eff > 1 else np.ones(len(x))
    return torch.from_numpy(np.maximum(mean, 1e-7).astype(np.float32))


def random_unit_quaternions(n: int) -> Tensor:
    """Uniformly random rotations as wxyz quaternions ``[n, 4]`` (Shoemake's method)."""
    u, v, w = torch.rand(n), torch.rand(n), torch.rand(n)
    return torch.stack(
        [
            torch.sqrt(1 - u) * torch.sin(2 * np.pi * v),
            torch.sqrt(1 - u) * torch.cos(2 * np.pi * v),
            torch.sqrt(u) * torch.sin(2 * np.pi * w),
            torch.sqrt(u) * torch.cos(2 * np.pi * w),
        ],
        dim=-1,
    )


def initial_gaussian_params(
    seed_points: Optional[Tuple[Tensor, Tensor]],
    sh_degree: int,
    num_random: int,
    random_scale: float,
    random_init: bool = False,
    initial_opacity: float = 0.1,
) -> Dict[str, Parameter]:
    """Splatfacto's initial parameters: ``means [N,3]``, log ``scales [N,3]``, ``quats [N,4]``, ``features_dc [N,3]``,
    ``features_rest [N,K-1,3]`` and logit ``opacities [N,1]``.

    Seed points ``(xyz [N,3], rgb uint8-range [N,3])`` are used unless ``random_init``; random points are uniform
    in a cube of side ``random_scale`` with random colours.
    """
    use_seed = seed_points is not None and not random_init
    if use_seed:
        means = seed_points[0].detach().float().cpu().clone()
    else:
        means = (torch.rand(num_random, 3) - 0.5) * random_scale
    n = means.shape[0]
    dim_sh = num_sh_bases(sh_degree)
    if use_seed and seed_points[1].shape[0] > 0:
        rgb = seed_points[1].detach().float().cpu() / 255.0
        if sh_degree > 0:
            features_dc = RGB2SH(rgb)
        else:  # colour-only optimisation through a sigmoid, as Splatfacto does
            features_dc = torch.logit(rgb, eps=1e-10)
    else:
        features_dc = torch.rand(n, 3)
    return {
        "means": Parameter(means),
        "scales": Parameter(torch.log(mean_knn_distance(means))[:, None].repeat(1, 3)),
        "quats": Parameter(random_unit_quaternions(n)),
        "features_dc": Parameter(features_dc),
        "features_rest": Parameter(torch.zeros(n, dim_sh - 1, 3)),
        "opacities": Parameter(torch.logit(torch.full((n, 1), initial_opacity))),
    }
