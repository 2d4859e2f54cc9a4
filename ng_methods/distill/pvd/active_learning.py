"""PVD-AL's three levels of active learning (official ``distill_mutual/utils.py`` and ``raymarching.cu``).

- image level: each epoch the poses the student renders worst (lowest PSNR against the teacher) go to a pool; once
  the pool holds more than 100 poses, pool entries perturbed by up to +-pi/20 about each axis replace 10% of the
  next epoch's poses (``Trainer.train``, ``gen_hard_poses``);
- ray level: the 10% of each batch's rays with the largest colour error go to a pool of 4096*150 rays; once it is
  full, 10% extra rays drawn from it join every batch and their slots take the new hard rays (``train_step``);
- point level: per ray, only the highest-weight 30% of samples (and none on rays whose accumulated weight is below
  0.5) carry the feature/density/colour terms in stage 3 (``composite_rays_train``; teacher's and student's
  selections united).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras.rays import RayBundle
from torch import Tensor


@dataclass
class HardPoseConfig:
    """Image-level active learning, run by the PVD datamanager (official ``--curriculum_type`` contains image)."""

    enabled: bool = True
    """Pool hard poses and replay them perturbed."""
    hard_images_ratio: float = 0.1
    """Share of an epoch's poses pooled as hard, and of the next epoch's poses replaced (``--hard_imgs_ratio``)."""
    hard_images_pool_size: int = 100
    """The pose pool starts replaying once it holds more than this many poses (hard-coded 100 upstream)."""
    hard_images_min_epoch: int = 3
    """Image-level learning starts after this many epochs (``self.epoch > 3``)."""
    max_perturb_angle: float = math.pi / 20
    """Largest roll, pitch and yaw added to a replayed hard pose (``gen_hard_poses``: s = 20)."""


@dataclass
class ActiveLearningConfig:
    """Ray- and point-level active learning, run by the PVD model (official ``--curriculum_type image+ray+point``)."""

    ray_level: bool = True
    """Pool hard rays and replay them in later batches."""
    point_level: bool = True
    """Restrict the per-sample terms of stage 3 to high-weight samples."""
    hard_rays_ratio: float = 0.1
    """Share of a batch's rays pooled as hard, and of extra pooled rays added to a batch (``--hard_rays_ratio``)."""
    hard_rays_pool_size: int = 4096 * 150
    """Hard rays held before the pool starts replaying (``--hard_rays_pool_size``)."""
    hard_points_ratio: float = 0.3
    """Share of each ray's samples, by weight, kept for the per-sample terms (``third_curri_Ratio``)."""
    hard_points_min_accumulation: float = 0.5
    """Rays whose accumulated weight is below this keep no samples."""


_RAY_FIELDS = ("origins", "directions", "pixel_area", "camera_indices", "nears", "fars")


class HardRayPool:
    """Fixed-capacity pool of hard rays (flattened ``RayBundle`` fields)."""

    def __init__(self, capacity: int, ratio: float) -> None:
        self.capacity = capacity
        self.ratio = ratio
        self.rays: Dict[str, Tensor] = {}

    def __len__(self) -> int:
        return 0 if not self.rays else self.rays["origins"].shape[0]

    @property
    def full(self) -> bool:
        return len(self) >= self.capacity

    def draw(self, n_base_rays: int, generator: Optional[torch.Generator] = None) -> Optional[Int[Tensor, "k"]]:
        """Pool slots to replay with a batch of ``n_base_rays`` rays (None until the pool is full)."""
        if not self.full:
            return None
        count = int(self.ratio * n_base_rays)
        device = self.rays["origins"].device
        return torch.randperm(len(self), generator=generator, device="cpu")[:count].to(device)

    def bundle(self, slots: Int[Tensor, "k"]) -> Dict[str, Tensor]:
        """The pooled rays in ``slots`` as RayBundle keyword arguments."""
        return {name: value[slots] for name, value in self.rays.items()}

    @staticmethod
    def hardest(errors: Float[Tensor, "n"], n_base_rays: int, ratio: float) -> Int[Tensor, "k"]:
        """Indices of the ``int(ratio * n_base_rays)`` rays with the largest error (official sort, descending)."""
        return torch.argsort(errors, descending=True)[: int(n_base_rays * ratio)]

    def update(self, ray_bundle: RayBundle, errors: Float[Tensor, "n"], n_base_rays: int,
               replayed_slots: Optional[Int[Tensor, "k"]]) -> None:
        """Pool this batch's hardest rays: into the replayed slots once full, appended before that."""
        hard = self.hardest(errors.detach(), n_base_rays, self.ratio)
        new = {name: getattr(ray_bundle, name)[hard].detach() for name in _RAY_FIELDS
               if getattr(ray_bundle, name, None) is not None}
        if replayed_slots is not None:
            count = min(len(replayed_slots), len(hard))
            for name, value in new.items():
                self.rays[name][replayed_slots[:count]] = value[:count]
        elif not self.rays:
            self.rays = new
        else:
            self.rays = {name: torch.cat([self.rays[name], new[name]]) for name in self.rays}


def hard_point_mask(
    weights: Float[Tensor, "n_samples"], ray_indices: Int[Tensor, "n_samples"], n_rays: int,
    ratio: float, min_accumulation: float,
) -> Bool[Tensor, "n_samples"]:
    """Samples that carry the per-sample terms: rank (by weight, per ray) <= ``ratio * num_samples_of_ray``.

    Rays whose weights sum to less than ``min_accumulation`` keep none, as ``composite_rays_train`` marks them -1.
    """
    if weights.numel() == 0:
        return torch.zeros_like(weights, dtype=torch.bool)
    by_weight = torch.argsort(weights, descending=True)
    order = by_weight[torch.argsort(ray_indices[by_weight], stable=True)]
    counts = torch.bincount(ray_indices, minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    sorted_rays = ray_indices[order]
    rank = torch.arange(len(order), device=weights.device) - starts[sorted_rays]
    accumulation = torch.zeros(n_rays, dtype=weights.dtype, device=weights.device).index_add_(0, ray_indices, weights)
    keep_sorted = (rank <= counts[sorted_rays] * ratio) & (accumulation[sorted_rays] >= min_accumulation)
    mask = torch.zeros_like(keep_sorted)
    mask[order] = keep_sorted
    return mask


def _axis_rotation(angle: Tensor, axis: int) -> Float[Tensor, "n 3 3"]:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = [one, zero, zero, zero, c, -s, zero, s, c]
    elif axis == 1:
        rows = [c, zero, s, zero, one, zero, -s, zero, c]
    else:
        rows = [c, -s, zero, s, c, zero, zero, zero, one]
    return torch.stack(rows, dim=-1).reshape(*angle.shape, 3, 3)


def perturb_poses(
    poses: Float[Tensor, "n 3 4"], max_angle: float, generator: Optional[torch.Generator] = None
) -> Tuple[Float[Tensor, "n 3 4"], Float[Tensor, "n 3"]]:
    """Rotate each camera by ``Rz(yaw) Rx(roll) Ry(pitch)``, angles uniform in ``[-max_angle, max_angle]``.

    The rotation is applied on the left of the camera-to-world rotation and the centre stays (``gen_hard_poses``).
    Returns the new poses and the ``(roll, pitch, yaw)`` drawn for each.
    """
    angles = (torch.rand(poses.shape[0], 3, generator=generator) * 2 - 1) * max_angle
    angles = angles.to(poses)
    rotation = _axis_rotation(angles[:, 2], 2) @ _axis_rotation(angles[:, 0], 0) @ _axis_rotation(angles[:, 1], 1)
    perturbed = poses.clone()
    perturbed[:, :3, :3] = rotation @ poses[:, :3, :3]
    return perturbed, angles


class HardPosePool:
    """Image-level active learning: pools each epoch's worst poses and hands back perturbed pool entries."""

    def __init__(self, config: HardPoseConfig) -> None:
        self.config = config
        self.poses: Optional[Tensor] = None

    @property
    def full(self) -> bool:
        return self.poses is not None and self.poses.shape[0] > self.config.hard_images_pool_size

    def end_epoch(self, epoch: int, poses: Float[Tensor, "m 3 4"], psnr: Float[Tensor, "m"],
                  generator: Optional[torch.Generator] = None) -> Optional[Float[Tensor, "k 3 4"]]:
        """Record an epoch's per-pose PSNR; returns perturbed hard poses to put into the next epoch, if any."""
        if epoch <= self.config.hard_images_min_epoch:
            return None
        count = int(self.config.hard_images_ratio * poses.shape[0])
        hardest = poses[torch.argsort(psnr)[:count]].detach()
        if not self.full:
            self.poses = hardest if self.poses is None else torch.cat([self.poses, hardest])
            return None
        slots = torch.randperm(self.poses.shape[0], generator=generator)[:count].to(self.poses.device)
        replay, _ = perturb_poses(self.poses[slots], self.config.max_perturb_angle, generator)
        self.poses[slots] = hardest[: len(slots)]
        return replay
