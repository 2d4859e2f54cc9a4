"""Occupancy-grid sampler that runs on any device (nerfacc's estimator state, our marching on CPU)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import nerfacc
import torch
from jaxtyping import Float, Int
from nerfstudio.cameras.rays import Frustums, RayBundle, RaySamples
from torch import Tensor, nn

from ng_methods.kernels.ray_marching import march_occupancy_grid
from ng_methods.kernels.volume_rendering import render_visibility_from_density


@dataclass
class OccupancySamplerConfig:
    """Occupancy-grid ray marching (Instant-NGP / nerfacc ``OccGridEstimator``)."""

    grid_resolution: int = 128
    """Cells per axis of each occupancy-grid level."""
    grid_levels: int = 1
    """Nested grid levels, each twice the size of the previous (1 for bounded scenes, 4+ for unbounded ones)."""
    render_step_size: Optional[float] = None
    """Minimum marching step; None: the scene box diagonal / 1000 (about 1000 steps through the finest level)."""
    cone_angle: float = 0.0
    """Step growth with distance: 0 for bounded scenes, 1/256 for unbounded captures (Instant-NGP)."""
    alpha_thre: float = 0.01
    """Skip samples whose opacity is below this (capped by the grid's mean occupancy, as nerfacc does)."""
    early_stop_eps: float = 1e-4
    """Stop marching a ray once its transmittance falls below this."""
    near_plane: float = 0.05
    """Where marching starts along each ray."""
    far_plane: float = 1e3
    """Where marching stops along each ray."""
    occ_threshold: float = 0.01
    """Opacity (density * step) above which a cell counts as occupied."""
    occ_ema_decay: float = 0.95
    """Decay of the running occupancy estimate."""
    occ_warmup_steps: int = 256
    """Steps during which every cell (not a sample of them) is re-evaluated."""
    occ_update_every: int = 16
    """Update the grid every this many training steps."""


class OccupancySampler(nn.Module):
    """Samples ray intervals in occupied space and prunes invisible ones, on CUDA or CPU.

    The grid state is nerfacc's ``OccGridEstimator`` (its update is plain PyTorch); marching uses
    :func:`ng_methods.kernels.ray_marching.march_occupancy_grid`, i.e. nerfacc's CUDA traversal on a GPU and the
    PyTorch reference elsewhere, followed by the same alpha/transmittance pruning ``OccGridEstimator.sampling`` does.
    """

    def __init__(self, config: OccupancySamplerConfig, roi_aabb: Float[Tensor, "6"]) -> None:
        super().__init__()
        self.config = config
        self.estimator = nerfacc.OccGridEstimator(
            roi_aabb=roi_aabb, resolution=config.grid_resolution, levels=config.grid_levels
        )
        if config.render_step_size is None:
            diagonal = float(((roi_aabb[3:] - roi_aabb[:3]) ** 2).sum().sqrt())
            self.step_size = diagonal / 1000.0
        else:
            self.step_size = config.render_step_size

    @torch.no_grad()
    def update(self, step: int, density_fn: Callable[[Tensor], Tensor]) -> None:
        """Refresh the occupancy estimate (call every training step; it acts every ``occ_update_every``)."""
        self.estimator.update_every_n_steps(
            step=step,
            occ_eval_fn=lambda x: density_fn(x) * self.step_size,
            occ_thre=self.config.occ_threshold,
            ema_decay=self.config.occ_ema_decay,
            warmup_steps=self.config.occ_warmup_steps,
            n=self.config.occ_update_every,
        )

    @torch.no_grad()
    def forward(
        self, ray_bundle: RayBundle, density_fn: Callable[[Tensor], Tensor]
    ) -> Tuple[RaySamples, Int[Tensor, "n_samples"]]:
        """Packed samples of ``ray_bundle`` (flattened) and the ray each belongs to."""
        rays_o = ray_bundle.origins.reshape(-1, 3).contiguous()
        rays_d = ray_bundle.directions.reshape(-1, 3).contiguous()
        n_rays = rays_o.shape[0]
        near = torch.full((n_rays,), self.config.near_plane, device=rays_o.device, dtype=rays_o.dtype)
        far = torch.full_like(near, self.config.far_plane)
        if ray_bundle.nears is not None and ray_bundle.fars is not None:
            near = torch.maximum(near, ray_bundle.nears.reshape(-1))
            far = torch.minimum(far, ray_bundle.fars.reshape(-1))
        if self.training:  # stratified marching, as nerfacc does
            near = near + torch.rand_like(near) * self.step_size
        ray_indices, t_starts, t_ends = march_occupancy_grid(
            rays_o, rays_d, self.estimator.binaries, self.estimator.aabbs, near, far,
            self.step_size, self.config.cone_angle,
        )
        if t_starts.numel() > 0 and (self.config.alpha_thre > 0 or self.config.early_stop_eps > 0):
            positions = rays_o[ray_indices] + rays_d[ray_indices] * ((t_starts + t_ends) / 2)[:, None]
            sigmas = density_fn(positions)[..., 0]
            alpha_thre = min(self.config.alpha_thre, self.estimator.occs.mean().item())
            visible = render_visibility_from_density(
                t_starts, t_ends, sigmas, ray_indices, n_rays,
                early_stop_eps=self.config.early_stop_eps, alpha_thre=alpha_thre,
            )
            ray_indices, t_starts, t_ends = ray_indices[visible], t_starts[visible], t_ends[visible]
        return self._to_ray_samples(ray_bundle, rays_o, rays_d, ray_indices, t_starts, t_ends), ray_indices

    @staticmethod
    def _to_ray_samples(ray_bundle, rays_o, rays_d, ray_indices, t_starts, t_ends) -> RaySamples:
        flat = ray_bundle.flatten() if len(ray_bundle.shape) > 1 else ray_bundle
        camera_indices = flat.camera_indices[ray_indices] if flat.camera_indices is not None else None
        samples = RaySamples(
            frustums=Frustums(
                origins=rays_o[ray_indices],
                directions=rays_d[ray_indices],
                starts=t_starts[:, None],
                ends=t_ends[:, None],
                pixel_area=flat.pixel_area[ray_indices],
            ),
            camera_indices=camera_indices,
        )
        if flat.times is not None:
            samples.times = flat.times[ray_indices]
        return samples
