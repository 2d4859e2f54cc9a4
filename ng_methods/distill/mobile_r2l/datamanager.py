"""Image-level data for the MobileR2L student: batches of whole teacher pseudo-images (and optionally real images).

The official student trains on pseudo-data only: ``n_pseudo_data`` teacher renders at random poses, written once
before training (ngp_pl ``train.py --save_pseudo_data``, model/teacher/ngp_pl/train.py:236-294) and read back by a
shuffled ``DataLoader`` of ``batch_size=10`` images with ``drop_last=True`` (data/data_utils.py:104-126). Here the
renders come from :class:`ng_methods.distill.pseudo_images.PseudoImageCache` (pose ``i`` is a deterministic
function of ``(seed, i)``; images cached on disk up to a byte budget) and are served in shuffled epochs as well.

``next_train`` returns ``(Cameras [B], {"image": [B, H, W, 3], "is_pseudo": [B]})``: nerfstudio's ``VanillaPipeline``
passes the cameras to :meth:`MobileR2LModel.get_outputs`. Evaluation uses the dataset's real held-out images, as
``VanillaDataManager`` does. The teacher is loaded only when the first training batch is asked for, so
``ns-eval`` / ``ns-render`` never need it (they only read its config for the data path when ``data`` is unset).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.utils.rich_utils import CONSOLE

from ng_methods.distill.mobile_r2l.model import TRAIN_CAMERAS_KEY, rgb_on_white
from ng_methods.distill.poses import SceneKind
from ng_methods.distill.teacher import TeacherConfigError, load_teacher, read_teacher_config

__all__ = ["MobileR2LDataManager", "MobileR2LDataManagerConfig", "stack_cameras"]


@dataclass
class MobileR2LDataManagerConfig(VanillaDataManagerConfig):
    """Whole-image batches of teacher pseudo-images (official ``batch_size=10``, ``n_pseudo_data`` 8000 / 10000)."""

    _target: Type = field(default_factory=lambda: MobileR2LDataManager)
    """target class to instantiate"""
    teacher_config: Optional[Path] = None
    """The teacher's ``config.yml`` (required for training): ``--pipeline.datamanager.teacher-config``."""
    images_per_batch: int = 10
    """Images per training step (``--batch_size 10``, script/benchmarking_*.sh)."""
    num_pseudo_images: int = 8000
    """Distinct pseudo-images (``--n_pseudo_data``: 8000 for LLFF, distill_llff.sh:11; 10000 for Blender,
    distill_nerf.sh:10)."""
    pseudo_downscale: float = 1.0
    """Pseudo-images (and real images) at the training cameras' resolution divided by this."""
    scene_kind: SceneKind = "auto"
    """How novel poses are drawn: 'sphere' (random sphere shell, ``rand_360_poses``), 'forward_facing' (random
    poses inside the training cameras' bounds, ``rand_FF_poses``), 'auto': decided from the training cameras."""
    seed: int = 0
    """Seed of the pseudo-image poses and of the batch order."""
    pseudo_cache_dir: Optional[Path] = None
    """Folder for cached pseudo-images (None: ``pseudo_images/`` next to the teacher's ``config.yml``; the cache
    keeps one subfolder per teacher checkpoint, cameras and settings, so student runs share renders)."""
    pseudo_cache_max_bytes: int = 8 << 30
    """Disk budget of the cache; images beyond it are re-rendered when needed (never an error)."""
    prefill_pseudo_images: bool = True
    """Render every pseudo-image (that fits the budget) before the first step, as the official pre-generation."""
    real_images_per_batch: int = 0
    """Real training images mixed into each batch (official: 0, pseudo-images only)."""


class MobileR2LDataManager(VanillaDataManager):
    """See the module docstring."""

    config: MobileR2LDataManagerConfig

    def __init__(self, config: MobileR2LDataManagerConfig, device: Union[torch.device, str] = "cpu",
                 test_mode: Literal["test", "val", "inference"] = "val", world_size: int = 1, local_rank: int = 0,
                 **kwargs):
        if not 0 <= config.real_images_per_batch <= config.images_per_batch:
            raise ValueError(f"real_images_per_batch={config.real_images_per_batch} must be in "
                             f"[0, images_per_batch={config.images_per_batch}]")
        if config.data is None:
            _use_teacher_data(config)
        super().__init__(config, device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank,
                         **kwargs)
        self.train_dataset.metadata[TRAIN_CAMERAS_KEY] = self.train_dataset.cameras.camera_to_worlds.clone()
        self.teacher = None
        self._cache = None
        self._generator = torch.Generator().manual_seed(config.seed)
        self._order: List[int] = []

    def setup_train(self):
        """Nothing to prepare up front: pseudo-images come from the teacher on the first ``next_train``."""
        self.train_pixel_sampler = None
        self._pixels_per_batch = self.config.train_num_rays_per_batch

    def get_train_rays_per_batch(self) -> int:
        """Pixels in the last training batch (for nerfstudio's throughput log)."""
        return self._pixels_per_batch

    # ------------------------------------------------------------------------------------------ training
    def pseudo_cache(self):
        """The pseudo-image cache (loads the teacher and pre-renders on first use)."""
        if self._cache is None:
            from ng_methods.distill.pseudo_images import PseudoImageCache

            if self.config.teacher_config is None:
                raise TeacherConfigError("MobileR2L trains from a teacher: pass --pipeline.datamanager.teacher-config "
                                         "outputs/<teacher>/config.yml")
            self.teacher = load_teacher(Path(self.config.teacher_config), self.device)
            self._cache = PseudoImageCache(
                self.teacher, self.train_dataset.cameras, root=self._pseudo_cache_root(),
                max_bytes=self.config.pseudo_cache_max_bytes, seed=self.config.seed,
                scene_kind=self.config.scene_kind, downscale=self.config.pseudo_downscale,
            )
            if self.config.prefill_pseudo_images:
                self._cache.prefill(self.config.num_pseudo_images)
        return self._cache

    def _pseudo_cache_root(self) -> Path:
        if self.config.pseudo_cache_dir is not None:
            return Path(self.config.pseudo_cache_dir)
        return Path(self.config.teacher_config).parent / "pseudo_images"

    def _next_pseudo_indices(self, count: int) -> List[int]:
        """Shuffled epochs over the pseudo-images (official ``DistributedSampler(shuffle=True)``)."""
        indices = []
        while len(indices) < count:
            if not self._order:
                self._order = torch.randperm(self.config.num_pseudo_images, generator=self._generator).tolist()
            indices.append(self._order.pop())
        return indices

    def _real_image(self, index: int) -> Tuple[Cameras, torch.Tensor]:
        camera = copy.deepcopy(self.train_dataset.cameras[index: index + 1])
        camera.rescale_output_resolution(1.0 / self.config.pseudo_downscale)
        image = rgb_on_white(self.train_dataset[index]["image"])
        size = (int(camera.height[0]), int(camera.width[0]))
        if tuple(image.shape[:2]) != size:
            image = F.interpolate(image.permute(2, 0, 1)[None], size=size, mode="area")[0].permute(1, 2, 0)
        return camera, image

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        """``images_per_batch`` whole images: pseudo-images first, then ``real_images_per_batch`` real ones."""
        self.train_count += 1
        cache = self.pseudo_cache()
        real_count = self.config.real_images_per_batch
        views = [cache.get(i) for i in self._next_pseudo_indices(self.config.images_per_batch - real_count)]
        real = torch.randint(len(self.train_dataset), (real_count,), generator=self._generator).tolist()
        views += [self._real_image(i) for i in real]
        shapes = {tuple(image.shape) for _, image in views}
        if len(shapes) > 1:
            raise ValueError(f"MobileR2L batches need images of one size, got {sorted(shapes)} (training cameras of "
                             "different sizes are not supported)")
        cameras = stack_cameras([camera for camera, _ in views]).to(self.device)
        images = torch.stack([image.float() for _, image in views]).to(self.device)
        self._pixels_per_batch = images.shape[0] * images.shape[1] * images.shape[2]
        is_pseudo = torch.arange(len(views), device=self.device) < len(views) - real_count
        return cameras, {"image": images, "is_pseudo": is_pseudo}

    # ------------------------------------------------------------------------------------------ evaluation
    def next_eval(self, step: int) -> Tuple[Cameras, Dict]:
        """A whole held-out image (the model renders images, not ray batches)."""
        self.eval_count += 1
        camera, batch = self.next_eval_image(step)
        return camera, {**batch, "image": batch["image"][None]}


def _use_teacher_data(config: MobileR2LDataManagerConfig) -> None:
    """Default the data and dataparser to the teacher's (the student is evaluated on the teacher's scene)."""
    if config.teacher_config is None:
        raise TeacherConfigError("MobileR2L needs --pipeline.datamanager.teacher-config (or --data): neither is set")
    teacher = read_teacher_config(Path(config.teacher_config)).pipeline.datamanager
    dataparser = copy.deepcopy(teacher.dataparser)
    data = getattr(teacher, "data", None) or dataparser.data
    config.dataparser = dataparser
    config.data = Path(data)
    CONSOLE.print(f"MobileR2L: using the teacher's data {config.data} ({type(dataparser).__name__})")


def stack_cameras(cameras: List[Cameras]) -> Cameras:
    """Concatenate single cameras ``[1]`` into one ``Cameras [N]`` (intrinsics, sizes and types kept)."""
    flat = [camera.flatten() for camera in cameras]
    return Cameras(
        camera_to_worlds=torch.cat([c.camera_to_worlds for c in flat]),
        fx=torch.cat([c.fx for c in flat]), fy=torch.cat([c.fy for c in flat]),
        cx=torch.cat([c.cx for c in flat]), cy=torch.cat([c.cy for c in flat]),
        width=torch.cat([c.width for c in flat]), height=torch.cat([c.height for c in flat]),
        camera_type=torch.cat([c.camera_type for c in flat]),
    )
