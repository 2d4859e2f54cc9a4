"""``TeacherDataManager``: ray batches for distillation students, from real and novel cameras, with teacher targets.

Each training batch mixes rays through random pixels of the real training images (nerfstudio's pixel sampler)
and rays through random pixels of cameras at novel poses (:func:`~ng_methods.distill.poses.novel_cameras`); the
frozen teacher renders all of them (no grad). Evaluation is unchanged from ``VanillaDataManager``: the dataset's
held-out images (ground truth), so ``ns-eval`` scores a student against the real photos.

It plugs into nerfstudio's ``VanillaPipeline``, so ``ns-train``, ``ns-eval``, ``ns-render`` and the viewer work:
``ns-train <student> --pipeline.datamanager.teacher-config outputs/.../config.yml``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple, Type, Union

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from ng_methods.distill.poses import SceneKind, novel_cameras
from ng_methods.distill.teacher import (
    Teacher,
    TeacherConfigError,
    load_teacher,
    read_teacher_config,
    render_teacher_rays,
)

__all__ = ["TeacherDataManager", "TeacherDataManagerConfig", "composite_on_white"]


@dataclass
class TeacherDataManagerConfig(VanillaDataManagerConfig):
    """Rays from real and novel cameras with a frozen teacher's renders as targets (issue 12)."""

    _target: Type = field(default_factory=lambda: TeacherDataManager)
    """Target class to instantiate."""
    teacher_config: Optional[Path] = None
    """The trained teacher's ``config.yml`` (required): ``--pipeline.datamanager.teacher-config outputs/.../config.yml``.
    Its latest checkpoint is loaded; any ray-based nerfstudio model works."""
    novel_pose_fraction: float = 1.0
    """Share of each training batch's rays that come from novel poses; the rest go through real training pixels.
    1.0 is pure distillation, as in NeRDF, MobileR2L and PVD-AL."""
    novel_cameras_per_batch: int = 1
    """How many novel cameras a batch's novel rays are spread over (NeRDF: one new random pose per iteration)."""
    scene_kind: SceneKind = "auto"
    """How novel poses are drawn: "sphere" (orbit shell, 360-degree scenes), "forward_facing" (jittered training
    poses, LLFF-style captures), or "auto" (inferred from the training cameras' viewing directions)."""
    seed: int = 0
    """Seed of the datamanager's own generator: novel poses, novel pixels and real pixels are a function of it."""
    real_ray_targets: Literal["teacher", "ground_truth"] = "teacher"
    """Target ``image`` for rays through real pixels: the teacher's render or the training photo."""
    teacher_chunk_size: int = 8192
    """Rays the teacher renders at once."""


def composite_on_white(image: Tensor) -> Tensor:
    """RGB [..., 3] of an RGB or RGBA image; RGBA is composited on white (the NGPC/nerfstudio eval background)."""
    if image.shape[-1] == 4:
        return image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:])
    return image[..., :3]


def concatenate_ray_bundles(first: RayBundle, second: RayBundle) -> RayBundle:
    """Concatenate two flat ray bundles (fields that one of them lacks are dropped)."""

    def cat(a, b):
        return None if a is None or b is None else torch.cat([a, b])

    keys = set(first.metadata) & set(second.metadata)
    return RayBundle(
        origins=cat(first.origins, second.origins), directions=cat(first.directions, second.directions),
        pixel_area=cat(first.pixel_area, second.pixel_area), camera_indices=cat(first.camera_indices,
                                                                                 second.camera_indices),
        nears=cat(first.nears, second.nears), fars=cat(first.fars, second.fars),
        metadata={k: torch.cat([first.metadata[k], second.metadata[k]]) for k in keys},
        times=cat(first.times, second.times),
    )


class TeacherDataManager(VanillaDataManager):
    """``VanillaDataManager`` whose training batches carry a frozen teacher's renders (see module docstring).

    ``next_train(step)`` returns ``(RayBundle [n], batch)`` with batch ``"image"`` [n, 3] (the target),
    ``"teacher_rgb"`` [n, 3], ``"teacher_accumulation"`` [n, 1], ``"teacher_depth"`` [n, 1] and ``"is_novel"``
    [n] (bool; novel rays come last). Novel rays carry the index of the training camera whose intrinsics they
    copy as ``camera_indices``.
    """

    config: TeacherDataManagerConfig

    def __init__(self, config: TeacherDataManagerConfig, device: Union[torch.device, str] = "cpu",
                 test_mode: Literal["test", "val", "inference"] = "val", world_size: int = 1, local_rank: int = 0,
                 **kwargs):
        if config.teacher_config is None:
            raise TeacherConfigError("No teacher: pass --pipeline.datamanager.teacher-config outputs/.../config.yml "
                                     "(the config.yml of a trained nerfstudio model).")
        if not 0.0 <= config.novel_pose_fraction <= 1.0:
            raise ValueError(f"novel_pose_fraction must be in [0, 1], got {config.novel_pose_fraction}")
        teacher_trainer_config = read_teacher_config(config.teacher_config)
        if config.data is None:
            _use_teacher_data(config, teacher_trainer_config)
        self._teacher: Optional[Teacher] = None
        self._generator = torch.Generator().manual_seed(config.seed)
        # nerfstudio's cache dataloader returns the same batch object until it resamples: sort it once per object
        self._cached_batch: Optional[Dict] = None
        self._cached_batch_in_order: Optional[Dict] = None
        super().__init__(config, device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank,
                         **kwargs)

    @property
    def teacher(self) -> Teacher:
        """The frozen teacher on this datamanager's device (loaded on first use, or by ``setup_train``)."""
        if self._teacher is None:
            assert self.config.teacher_config is not None
            CONSOLE.print(f"Loading the teacher from {self.config.teacher_config}")
            self._teacher = load_teacher(self.config.teacher_config, self.device)
        return self._teacher

    def setup_train(self):
        """Set up the real-image sampler; when training (``test_mode="val"``) also load the teacher now, so a bad
        teacher fails before the first step. ``ns-eval``/``ns-render`` never load it."""
        super().setup_train()
        if self.test_mode == "val":
            _ = self.teacher

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        """A batch of real and novel rays with the teacher's renders as targets (see the class docstring)."""
        self.train_count += 1
        assert self.train_pixel_sampler is not None
        total = self.train_pixel_sampler.num_rays_per_batch
        num_novel = round(total * self.config.novel_pose_fraction)
        real_bundle, real_images = self._real_rays(total - num_novel, step)
        novel_bundle = self._novel_rays(num_novel)
        bundles = [b for b in (real_bundle, novel_bundle) if b is not None]
        ray_bundle = bundles[0] if len(bundles) == 1 else concatenate_ray_bundles(*bundles)
        teacher = render_teacher_rays(self.teacher, ray_bundle, self.config.teacher_chunk_size)
        is_novel = torch.arange(len(ray_bundle), device=self.device) >= total - num_novel
        target = teacher["rgb"].clone()
        if real_images is not None and self.config.real_ray_targets == "ground_truth":
            target[: len(real_images)] = real_images
        batch = {"image": target, "teacher_rgb": teacher["rgb"], "teacher_accumulation": teacher["accumulation"],
                 "teacher_depth": teacher["depth"], "is_novel": is_novel}
        return ray_bundle, batch

    def _real_rays(self, count: int, step: int) -> Tuple[Optional[RayBundle], Optional[Tensor]]:
        if count == 0:
            return None, None
        image_batch = self._train_images_in_index_order()
        sampler = self.train_pixel_sampler
        assert sampler is not None
        total = sampler.num_rays_per_batch
        seed = int(torch.randint(0, 2**62, (1,), generator=self._generator)[0])
        devices = [self.device] if torch.device(self.device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the pixel sampler draws from torch's global RNG
            torch.manual_seed(seed)
            sampler.set_num_rays_per_batch(count)
            try:
                batch = sampler.sample(image_batch)
            finally:
                sampler.set_num_rays_per_batch(total)
        ray_bundle = self.train_ray_generator(batch["indices"])
        return ray_bundle.flatten(), composite_on_white(batch["image"].to(self.device).float())

    def _train_images_in_index_order(self) -> Dict:
        """The dataloader's current image batch sorted by dataset index (re-sorted only when it is a new batch)."""
        raw = next(self.iter_train_image_dataloader)
        if raw is not self._cached_batch:
            self._cached_batch, self._cached_batch_in_order = raw, _in_index_order(raw)
        return self._cached_batch_in_order

    def _novel_rays(self, count: int) -> Optional[RayBundle]:
        if count == 0:
            return None
        train_cameras = self.train_dataset.cameras
        generator = self._generator
        num_cameras = max(1, self.config.novel_cameras_per_batch)
        sources = torch.randint(len(train_cameras), (num_cameras,), generator=generator)
        cameras = novel_cameras(train_cameras, num_cameras, generator, self.config.scene_kind,
                                source_indices=sources)
        camera_of_ray = torch.randint(num_cameras, (count,), generator=generator)
        height, width = cameras.height[camera_of_ray, 0], cameras.width[camera_of_ray, 0]
        y = (torch.rand(count, generator=generator) * height).floor().clamp(max=height - 1)
        x = (torch.rand(count, generator=generator) * width).floor().clamp(max=width - 1)
        coords = torch.stack([y, x], dim=-1) + 0.5  # pixel centres, as nerfstudio's RayGenerator uses
        cameras = cameras.to(self.device)
        bundle = cameras.generate_rays(camera_indices=camera_of_ray[:, None].to(self.device),
                                       coords=coords.to(self.device)).flatten()
        bundle.camera_indices = sources.to(self.device)[camera_of_ray.to(self.device)][:, None]
        return bundle

    def novel_cameras(self, count: int, generator: Optional[torch.Generator] = None) -> Cameras:
        """``count`` novel cameras around this dataset's training cameras (this datamanager's scene kind)."""
        return novel_cameras(self.train_dataset.cameras, count, generator or self._generator, self.config.scene_kind)


def _in_index_order(image_batch: Dict) -> Dict:
    """The cached images sorted by dataset index: nerfstudio's CacheDataloader shuffles them with Python's global
    RNG, which would make the sampled pixels depend on more than our seed."""
    order = torch.argsort(image_batch["image_idx"])
    count = len(order)
    return {key: value[order.to(value.device)] if torch.is_tensor(value) and value.ndim and len(value) == count
            else value for key, value in image_batch.items()}


def _use_teacher_data(config: TeacherDataManagerConfig, teacher_config) -> None:
    """Train on the teacher's scene: its data path and a copy of its dataparser (so both share one world frame).
    RGBA images are composited on white, as the teachers render for evaluation."""
    teacher_datamanager = teacher_config.pipeline.datamanager
    dataparser = copy.deepcopy(getattr(teacher_datamanager, "dataparser", config.dataparser))
    data = getattr(teacher_datamanager, "data", None) or getattr(dataparser, "data", None)
    if data is None or not Path(data).exists():
        raise TeacherConfigError(f"Teacher config {config.teacher_config}: its data folder {data} is missing; pass "
                                 "--data (the scene the teacher was trained on).")
    if getattr(dataparser, "alpha_color", "white") is None:
        dataparser.alpha_color = "white"
    config.dataparser = dataparser
    config.data = Path(data)
