"""``PseudoImageCache``: whole teacher renders at novel poses, for image-level students (MobileR2L).

MobileR2L trains on 2k-10k "pseudo images" the teacher renders at random poses (``data/pseudo.py``). Here image
``i`` is the teacher's render from a camera that is a deterministic function of ``(seed, i)``, so a dataset of
any size is defined without storing poses. Renders are cached as ``.npy`` files under ``root`` up to
``max_bytes``; past the bound they are recomputed on every ``get`` (never an error), so the cache is an
optimisation and never changes the values.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from rich.progress import track
from torch import Tensor

from ng_methods.distill.poses import SceneKind, novel_cameras
from ng_methods.distill.teacher import Teacher, latest_checkpoint, render_teacher_rays

__all__ = ["PseudoImageCache"]

_SEED_STRIDE = 1_000_003
"""Spreads (seed, index) pairs over distinct generator seeds."""


class PseudoImageCache:
    """Teacher renders at deterministic novel cameras, cached on disk up to ``max_bytes``.

    Args:
        teacher: the frozen teacher.
        train_cameras: the training cameras the novel poses are drawn around (their intrinsics are reused).
        root: cache folder (a subfolder keyed by teacher checkpoint, cameras and settings is used); None: no cache.
        max_bytes: the most bytes of images written under the subfolder; beyond it, images are recomputed.
        seed: image ``i``'s camera is a function of ``(seed, i)`` only.
        scene_kind: pose sampler, see :func:`~ng_methods.distill.poses.sample_novel_poses`.
        downscale: the training intrinsics are divided by this (MobileR2L renders pseudo data at full size).
        chunk_size: rays the teacher renders at once.
    """

    def __init__(self, teacher: Teacher, train_cameras: Cameras, root: Optional[Path], max_bytes: int, seed: int = 0,
                 scene_kind: SceneKind = "auto", downscale: float = 1.0, chunk_size: int = 8192):
        self.teacher = teacher
        self.train_cameras = train_cameras.to("cpu")
        self.max_bytes = int(max_bytes)
        self.seed = int(seed)
        self.scene_kind: SceneKind = scene_kind
        self.downscale = float(downscale)
        self.chunk_size = chunk_size
        self.directory = None if root is None else Path(root) / self._cache_key()
        self.bytes_written = self._bytes_on_disk()

    def camera(self, index: int) -> Cameras:
        """The novel camera ``[1]`` of image ``index`` (a deterministic function of ``(seed, index)``)."""
        generator = torch.Generator().manual_seed(self.seed * _SEED_STRIDE + int(index))
        return novel_cameras(self.train_cameras, 1, generator, self.scene_kind, downscale=self.downscale)

    def get(self, index: int) -> Tuple[Cameras, Float[Tensor, "h w 3"]]:
        """``(camera [1], rgb [h, w, 3])`` of pseudo image ``index``: from disk if cached, else rendered."""
        camera = self.camera(index)
        path = self._path(index)
        if path is not None and path.is_file():
            return camera, torch.from_numpy(np.load(path))
        rgb = self._render(camera)
        self._store(path, rgb)
        return camera, rgb

    def prefill(self, count: int) -> None:
        """Render and cache images ``0 .. count-1`` (with a progress bar); stops writing at ``max_bytes``."""
        for index in track(range(count), description="Rendering teacher pseudo images"):
            path = self._path(index)
            if path is None or not path.is_file():
                if path is None or not self._fits(self._image_bytes(self.camera(index))):
                    break
                self.get(index)

    def _render(self, camera: Cameras) -> Tensor:
        height, width = int(camera.height[0, 0]), int(camera.width[0, 0])
        rays = camera.to(self.teacher.device).generate_rays(camera_indices=0).flatten()
        rgb = render_teacher_rays(self.teacher, rays, self.chunk_size)["rgb"]
        return rgb.reshape(height, width, 3).float().cpu()

    def _store(self, path: Optional[Path], rgb: Tensor) -> None:
        array = rgb.numpy().astype(np.float32)
        if path is None or not self._fits(array.nbytes):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(partial, "wb") as handle:
            np.save(handle, array)
        os.replace(partial, path)  # readers never see a half-written file
        self.bytes_written += path.stat().st_size

    def _fits(self, size: int) -> bool:
        return self.bytes_written + size <= self.max_bytes

    @staticmethod
    def _image_bytes(camera: Cameras) -> int:
        return int(camera.height[0, 0]) * int(camera.width[0, 0]) * 3 * 4 + 128  # float32 + .npy header

    def _path(self, index: int) -> Optional[Path]:
        return None if self.directory is None else self.directory / f"pseudo_{int(index):07d}.npy"

    def _bytes_on_disk(self) -> int:
        if self.directory is None or not self.directory.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.directory.glob("pseudo_*.npy"))

    def _cache_key(self) -> str:
        """Images from another teacher, checkpoint, scene or setting never match this key."""
        checkpoint = latest_checkpoint(self.teacher.config_path, self.teacher.config)
        digest = hashlib.sha256()
        digest.update(str(checkpoint.resolve()).encode())
        digest.update(str(checkpoint.stat().st_mtime_ns).encode())
        digest.update(f"{self.seed}|{self.scene_kind}|{self.downscale}".encode())
        for tensor in (self.train_cameras.camera_to_worlds, self.train_cameras.fx, self.train_cameras.fy,
                       self.train_cameras.cx, self.train_cameras.cy, self.train_cameras.width,
                       self.train_cameras.height):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return f"{self.teacher.config.method_name}-{digest.hexdigest()[:16]}"
