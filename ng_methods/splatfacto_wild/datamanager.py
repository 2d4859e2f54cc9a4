"""Splatfacto-W's datamanager: nerfstudio's full-image datamanager plus COLMAP seed points and the official protocol.

* **Seed points** (``points3d_file``): when the dataparser gives no ``points3D_xyz`` (LLFF ``poses_bounds.npy``
  collections such as ``wild/statue-of-liberty``, whose ``sparse/0/points3D.bin`` is in the poses' world frame),
  the COLMAP points are read and mapped with the dataparser's own ``dataparser_transform`` and
  ``dataparser_scale`` (exactly what it applied to the camera positions), and put into the train outputs'
  metadata, where nerfstudio's pipeline takes Gaussian seed points from. A missing file only warns (random init).
* **Official evaluation protocol** (``train_on_test_left_halves``): the test photos join the training set after
  the training photos, each with a mask that keeps only its left half (columns ``[0, W // 2)``), so their
  embeddings are learned with the scene over the whole run (the official datamanager,
  ``splatfactow/splatfactow_datamanager.py`` ``next_train``). Evaluation cameras carry
  ``metadata["appearance_idx"]`` = their index among the training images, so the model renders them with that
  learned embedding and scores the right half without the post-hoc fit (:mod:`.eval_protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.utils.rich_utils import CONSOLE

from ng_methods.data.phototourism import read_colmap_points
from ng_methods.data.validation import DataValidationError

APPEARANCE_INDEX = "appearance_idx"
"""Camera metadata key: the training-image embedding an evaluation camera is rendered with (official protocol)."""


@dataclass
class SplatfactoWildDatamanagerConfig(FullImageDatamanagerConfig):
    """``FullImageDatamanagerConfig`` plus COLMAP seed points for LLFF data and the official evaluation protocol."""

    _target: Type = field(default_factory=lambda: SplatfactoWildDatamanager)
    points3d_file: Optional[Path] = Path("sparse/0/points3D.bin")
    """COLMAP points, relative to the data folder, used as seed points when the dataparser gives none (mapped
    with the dataparser's transform and scale). None: never read. A missing file warns and keeps random init."""
    train_on_test_left_halves: bool = False
    """Official protocol: the test photos' left halves train with the rest (embeddings learned over all steps);
    evaluation renders them with those embeddings and scores the right halves. False: test photos stay out of
    training and the model fits each one's embedding on its left half after training (our default)."""


def left_half_mask(height: int, width: int) -> torch.Tensor:
    """``[H, W, 1]`` bool: True on columns ``[0, W // 2)`` (the half a test photo trains on)."""
    mask = torch.zeros(height, width, 1, dtype=torch.bool)
    mask[:, : width // 2] = True
    return mask


def _cat_cameras(first: Cameras, second: Cameras) -> Cameras:
    def cat(name: str) -> Optional[torch.Tensor]:
        a, b = getattr(first, name), getattr(second, name)
        if a is None and b is None:
            return None
        if a is None or b is None:
            raise DataValidationError(f"Train and test cameras differ in whether they have {name}")
        return torch.cat([a, b], dim=0)

    return Cameras(
        camera_to_worlds=cat("camera_to_worlds"), fx=cat("fx"), fy=cat("fy"), cx=cat("cx"), cy=cat("cy"),
        width=cat("width"), height=cat("height"), distortion_params=cat("distortion_params"),
        camera_type=cat("camera_type"), times=cat("times"),
    )


def merge_train_and_test(train: DataparserOutputs, test: DataparserOutputs) -> DataparserOutputs:
    """Train outputs followed by the test photos (metadata tensors with one row per photo are concatenated)."""
    if (train.mask_filenames is None) != (test.mask_filenames is None):
        raise DataValidationError("Train and test splits differ in whether they have masks")
    n_train, n_test = len(train.image_filenames), len(test.image_filenames)
    metadata = dict(train.metadata)
    for key, value in train.metadata.items():
        other = test.metadata.get(key)
        if torch.is_tensor(value) and torch.is_tensor(other) and len(value) == n_train and len(other) == n_test:
            metadata[key] = torch.cat([value, other], dim=0)
    return DataparserOutputs(
        image_filenames=list(train.image_filenames) + list(test.image_filenames),
        cameras=_cat_cameras(train.cameras, test.cameras),
        alpha_color=train.alpha_color,
        scene_box=train.scene_box,
        mask_filenames=None if train.mask_filenames is None else list(train.mask_filenames) + list(test.mask_filenames),
        dataparser_transform=train.dataparser_transform,
        dataparser_scale=train.dataparser_scale,
        metadata=metadata,
    )


class SplatfactoWildDatamanager(FullImageDatamanager):
    """See the module docstring."""

    config: SplatfactoWildDatamanagerConfig

    def create_train_dataset(self):
        outputs = self._with_seed_points(self.train_dataparser_outputs)
        self.num_train_photos = len(outputs.image_filenames)
        if self.config.train_on_test_left_halves:
            outputs = merge_train_and_test(outputs, self.dataparser.get_dataparser_outputs(split=self.test_split))
        self.train_dataparser_outputs = outputs
        return self.dataset_type(dataparser_outputs=outputs, scale_factor=self.config.camera_res_scale_factor)

    def _with_seed_points(self, outputs: DataparserOutputs) -> DataparserOutputs:
        if self.config.points3d_file is None or "points3D_xyz" in outputs.metadata:
            return outputs
        path = self.config.dataparser.data / self.config.points3d_file
        if not path.is_file():
            CONSOLE.print(f"[yellow]No COLMAP points at {path}: Gaussians start from random points[/yellow]")
            return outputs
        points = read_colmap_points(path, outputs.dataparser_transform, outputs.dataparser_scale)
        outputs.metadata = {**outputs.metadata, **points}
        return outputs

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        camera, data = super().next_train(step)
        index = int(camera.metadata["cam_idx"])
        if index >= self.num_train_photos:  # a test photo: only its left half trains
            height, width = data["image"].shape[:2]
            keep = left_half_mask(height, width)
            if "mask" in data:
                keep = keep & data["mask"].bool().cpu()
            data["mask"] = keep
        return camera, data

    def _tag_eval_camera(self, camera: Cameras, eval_index: int) -> Cameras:
        if self.config.train_on_test_left_halves:
            camera.metadata = {**(camera.metadata or {}), APPEARANCE_INDEX: self.num_train_photos + eval_index}
        return camera

    @property
    def fixed_indices_eval_dataloader(self) -> List[Tuple[Cameras, Dict]]:
        pairs = super().fixed_indices_eval_dataloader
        return [(self._tag_eval_camera(camera, i), data) for i, (camera, data) in enumerate(pairs)]

    def next_eval_image(self, step: int) -> Tuple[Cameras, Dict]:
        index = self.eval_unseen_cameras.pop(0)
        if not self.eval_unseen_cameras:
            self.eval_unseen_cameras = list(range(len(self.eval_dataset)))
        data = dict(self.cached_eval[index])
        data["image"] = data["image"].to(self.device)
        camera = self.eval_dataset.cameras[index : index + 1].to(self.device)
        return self._tag_eval_camera(camera, index), data
