"""A full-image datamanager that hands the model several training images (with their times) per step.

4D-Rotor GS renders 3 (D-NeRF) or 2 (N3V) cameras per optimisation step; nerfstudio's trainer asks the datamanager
for one batch per step, so ``images_per_step > 1`` returns ``Cameras`` of shape ``[B]`` (times included,
``metadata["cam_idx"]`` a list of ``B`` indices) and ``batch["image"]`` of shape ``[B, H, W, C]`` (all training
images must then have one size, as in D-NeRF). Images are drawn without replacement per epoch, as nerfstudio's
``FullImageDatamanager`` does. With ``images_per_step = 1`` it behaves exactly like the parent.
Evaluation is unchanged (one camera at a time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig

__all__ = ["MultiImageDatamanager", "MultiImageDatamanagerConfig"]


@dataclass
class MultiImageDatamanagerConfig(FullImageDatamanagerConfig):
    """``FullImageDatamanagerConfig`` plus the number of training images per step."""

    _target: Type = field(default_factory=lambda: MultiImageDatamanager)
    images_per_step: int = 1
    """Training images (cameras) returned per step; > 1 needs a model that renders camera batches."""


class MultiImageDatamanager(FullImageDatamanager):
    """``FullImageDatamanager`` whose ``next_train`` can return ``images_per_step`` images at once."""

    config: MultiImageDatamanagerConfig

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        if self.config.images_per_step <= 1:
            return super().next_train(step)
        views = [super(MultiImageDatamanager, self).next_train(step) for _ in range(self.config.images_per_step)]
        indices = [int(camera.metadata["cam_idx"]) for camera, _ in views]
        cameras = self.train_cameras[torch.tensor(indices)].to(self.device)
        cameras.metadata = {"cam_idx": indices}
        sizes = {tuple(data["image"].shape) for _, data in views}
        if len(sizes) != 1:
            raise ValueError(f"images_per_step > 1 needs training images of one size, got {sorted(sizes)}")
        batch: Dict = {}
        for key, value in views[0][1].items():
            if isinstance(value, torch.Tensor):
                batch[key] = torch.stack([data[key] for _, data in views])
            else:
                batch[key] = [data[key] for _, data in views]
        return cameras, batch
