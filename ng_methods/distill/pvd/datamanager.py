"""PVD-AL's training poses: epochs of random novel poses, one pose per step, with image-level active learning.

Official ``Trainer.train`` (``distill_mutual/utils.py``): every epoch draws a fresh set of random poses (312 on
NeRF-Synthetic from ``get_rand_poses``), each iteration renders 4096 rays of one pose, and after each epoch the
worst-PSNR poses feed :class:`~ng_methods.distill.pvd.active_learning.HardPosePool`, whose perturbed poses replace
10% of the next epoch's. With ``novel_pose_fraction < 1`` batches come from the teacher datamanager unchanged
(real and novel rays mixed) and image-level learning is off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from torch import Tensor

from ng_methods.distill.datamanager import TeacherDataManager, TeacherDataManagerConfig
from ng_methods.distill.poses import sample_novel_poses
from ng_methods.distill.pvd.active_learning import HardPoseConfig, HardPosePool


@dataclass
class PVDDataManagerConfig(TeacherDataManagerConfig):
    """Teacher datamanager with PVD-AL's per-pose epochs and hard-pose pool."""

    _target: Type = field(default_factory=lambda: PVDDataManager)
    novel_pose_fraction: float = 1.0
    """Official PVD-AL distils on random poses only (``--use_real_data_for_train`` and ``--curri_contain_real_train``
    off)."""
    poses_per_epoch: int = 312
    """Random poses per epoch (official ``get_syn_poses``: 1 + sum over 80 elevations of ((90 - a) // 15 + 1))."""
    hard_poses: HardPoseConfig = field(default_factory=HardPoseConfig)
    """Image-level active learning (ray and point levels live in the model config)."""


class PVDDataManager(TeacherDataManager):
    """One novel pose per training step, ``poses_per_epoch`` poses per epoch, hard poses replayed."""

    config: PVDDataManagerConfig

    def __init__(self, config: PVDDataManagerConfig, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.pose_pool = HardPosePool(config.hard_poses)
        self.pose_generator = torch.Generator().manual_seed(config.seed + 7919)
        self.epoch = 0
        self.epoch_poses: Optional[Tensor] = None
        self.epoch_psnr: List[float] = []
        self.replay: Optional[Tensor] = None

    @property
    def one_pose_per_step(self) -> bool:
        return self.config.novel_pose_fraction >= 1.0

    def _train_cameras(self) -> Cameras:
        return self.train_dataset.cameras

    def _new_epoch(self) -> None:
        """Draw the next epoch's poses; perturbed hard poses replace a random 10% of them."""
        cameras = self._train_cameras()
        poses = sample_novel_poses(cameras.camera_to_worlds, self.config.poses_per_epoch, self.pose_generator,
                                   self.config.scene_kind)
        if self.replay is not None:
            slots = torch.randperm(poses.shape[0], generator=self.pose_generator)[: self.replay.shape[0]]
            poses[slots] = self.replay[: len(slots)].to(poses)
            self.replay = None
        self.epoch += 1
        self.epoch_poses = poses
        self.epoch_psnr = []

    def record_pose_psnr(self, psnr: float) -> None:
        """The student's PSNR against the teacher on the pose of the last batch (called by the pipeline)."""
        if not self.one_pose_per_step or self.epoch_poses is None:
            return
        self.epoch_psnr.append(float(psnr))
        if len(self.epoch_psnr) == self.epoch_poses.shape[0] and self.config.hard_poses.enabled:
            self.replay = self.pose_pool.end_epoch(self.epoch, self.epoch_poses, torch.tensor(self.epoch_psnr),
                                                   self.pose_generator)

    def _pose_camera(self, pose: Tensor) -> Cameras:
        source = self._train_cameras()[0:1]
        return Cameras(camera_to_worlds=pose[None].to(source.camera_to_worlds), fx=source.fx, fy=source.fy,
                       cx=source.cx, cy=source.cy, width=source.width, height=source.height,
                       camera_type=source.camera_type, distortion_params=source.distortion_params)

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        if not self.one_pose_per_step:
            return super().next_train(step)
        if self.epoch_poses is None or len(self.epoch_psnr) >= self.epoch_poses.shape[0]:
            self._new_epoch()
        self.train_count += 1
        camera = self._pose_camera(self.epoch_poses[len(self.epoch_psnr)])
        height, width = int(camera.height[0, 0]), int(camera.width[0, 0])
        count = self.config.train_num_rays_per_batch
        ys = torch.randint(0, height, (count,), generator=self.pose_generator)
        xs = torch.randint(0, width, (count,), generator=self.pose_generator)
        coords = torch.stack([ys, xs], dim=-1).float() + 0.5
        ray_bundle = camera.generate_rays(camera_indices=0, coords=coords).to(self.device)
        # No teacher targets here: the PVD model queries the teacher on its own samples (rendering it twice
        # would double the teacher's cost).
        return ray_bundle, {"is_novel": torch.ones(count, dtype=torch.bool, device=self.device)}
