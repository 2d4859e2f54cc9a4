"""``nonrigid-data``: Non-Rigid NeRF (Tretschk et al., ICCV 2021) monocular video scenes, with time.

Format (facebookresearch/nonrigid_nerf, ``data/example_sequence``)::

    <data>/precomputed.json   {"poses": N x 3 x 5, "bds": N x 2, "render_poses": M x 3 x 5, "i_test": int or list}
    <data>/images/*.png       one frame per pose, in sorted file-name order

``poses`` are what the original NeRF ``load_llff_data`` returns: OpenGL camera axes ([right, up, back]), already
recentred and scaled by the bounds (``bd_factor``), so they are used as they are. The fifth column is
``[height, width, focal]`` in pixels of the stored images. The frame index is the time: frame ``i`` of ``N`` is at
``t = i / (N - 1)`` (``cameras.times``, ``includes_time = True``).

Splits: ``eval_mode="i_test"`` (default) evaluates on the file's ``i_test`` frames and trains on the rest, as the
original code does; ``"interval"`` holds out every ``eval_interval``-th frame instead. ``test`` is the same as
``val``. Near/far (``bds``) are kept in ``metadata["near_far"]`` (``[N, 2]``). The scene box is the cameras'
bounding box padded by the largest far bound.

Problems raise :class:`~ng_methods.data.validation.DataValidationError` naming ``precomputed.json`` or the image
(missing, of the wrong size, or truncated/corrupt: every frame is checked to decode before training starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Type

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox

from ng_methods.data.validation import (
    DataValidationError,
    check_image_files,
    check_images_decodable,
    check_intrinsics,
    check_poses,
    format_list,
    load_json,
)

__all__ = ["NonRigidDataParserConfig", "NonRigidDataParser", "load_nonrigid_scene", "NonRigidScene"]

PRECOMPUTED_FILE = "precomputed.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class NonRigidScene:
    """Everything read from a Non-Rigid NeRF folder, validated (numpy, all frames)."""

    image_paths: List[Path]
    camera_to_worlds: np.ndarray  # [N, 3, 4] OpenGL convention
    bounds: np.ndarray  # [N, 2] near, far
    height: int
    width: int
    focal: float
    test_indices: List[int]


def _numeric(meta: Dict[str, Any], key: str, path: Path) -> np.ndarray:
    if key not in meta:
        raise DataValidationError(f"{path} has no '{key}' (top-level keys: {format_list(sorted(meta)) or 'none'})")
    try:
        return np.asarray(meta[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataValidationError(f"'{key}' in {path} is not a numeric array") from None


def load_nonrigid_scene(data: Path) -> NonRigidScene:
    """Read and validate ``<data>/precomputed.json`` and ``<data>/images``."""
    data = Path(data)
    if not data.is_dir():
        raise DataValidationError(f"Non-Rigid NeRF data directory {data} does not exist (or is not a directory)")
    path = data / PRECOMPUTED_FILE
    meta = load_json(path)
    poses = _numeric(meta, "poses", path)
    if poses.ndim != 3 or poses.shape[1:] != (3, 5) or poses.shape[0] == 0:
        raise DataValidationError(
            f"'poses' in {path} has shape {poses.shape}; expected [N, 3, 5] (3x4 camera-to-world plus an "
            "[height, width, focal] column) with N >= 1"
        )
    num = poses.shape[0]
    bounds = _numeric(meta, "bds", path)
    if bounds.shape != (num, 2):
        raise DataValidationError(f"'bds' in {path} has shape {bounds.shape}; expected [{num}, 2] (near, far per pose)")
    if not np.isfinite(bounds).all() or (bounds <= 0).any() or (bounds[:, 0] >= bounds[:, 1]).any():
        bad = np.flatnonzero(~np.isfinite(bounds).all(1) | (bounds <= 0).any(1) | (bounds[:, 0] >= bounds[:, 1]))
        raise DataValidationError(
            f"'bds' in {path} must hold finite 0 < near < far for every pose; bad pose {format_list(bad.tolist())}"
        )

    image_dir = data / "images"
    if not image_dir.is_dir():
        raise DataValidationError(f"{path} needs the frames in {image_dir}, which does not exist")
    image_paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(image_paths) != num:
        raise DataValidationError(
            f"{path} has {num} poses but {image_dir} has {len(image_paths)} images ({', '.join(IMAGE_SUFFIXES)}); "
            "there must be one image per pose, in sorted file-name order"
        )
    check_image_files(image_paths, source=path)

    camera_to_worlds = check_poses(poses[:, :, :4], source=path, names=[p.name for p in image_paths])
    hwf = poses[:, :, 4]
    if not np.allclose(hwf, hwf[0]):
        raise DataValidationError(f"The [height, width, focal] column of 'poses' in {path} differs between poses; "
                                  "all frames must share one camera")
    height, width, focal = hwf[0]
    check_intrinsics(path, height=height, width=width, focal=focal)
    height, width = int(round(height)), int(round(width))
    for p, size in zip(image_paths, check_images_decodable(image_paths, source=path)):
        if size != (width, height):
            raise DataValidationError(
                f"Image {p} is {size[0]}x{size[1]} but the poses in {path} say {width}x{height}; resize the "
                "images or rescale the [height, width, focal] column"
            )

    raw_test = meta.get("i_test", [])
    test_list = raw_test if isinstance(raw_test, list) else [raw_test]
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num for i in test_list):
        raise DataValidationError(f"'i_test' in {path} must be a frame index or a list of them in [0, {num}), "
                                  f"got {raw_test!r}")
    return NonRigidScene(image_paths, camera_to_worlds[:, :3, :4], bounds, height, width, float(focal),
                         sorted(set(test_list)))


@dataclass
class NonRigidDataParserConfig(DataParserConfig):
    """Non-Rigid NeRF ``precomputed.json`` scenes; the frame index normalised to [0, 1] is the time."""

    _target: Type = field(default_factory=lambda: NonRigidDataParser)
    """target class to instantiate"""
    data: Path = Path("data/nonrigid/example_sequence")
    """Directory with ``precomputed.json`` and ``images/``."""
    eval_mode: Literal["i_test", "interval"] = "i_test"
    """Held-out frames: the file's ``i_test`` frames, or every ``eval_interval``-th frame."""
    eval_interval: int = 8
    """With ``eval_mode="interval"``: frames ``0, k, 2k, ...`` are held out."""
    scale_factor: float = 1.0
    """Scale applied to the camera positions (and bounds)."""


class NonRigidDataParser(DataParser):
    """Reads a Non-Rigid NeRF scene; see the module docstring."""

    config: NonRigidDataParserConfig
    includes_time: bool = True

    def __init__(self, config: NonRigidDataParserConfig):
        super().__init__(config=config)
        self.includes_time = True

    def split_indices(self, num: int, test_indices: List[int], split: str) -> List[int]:
        """Frame indices of ``split`` ("train", or "val"/"test", which are the same held-out frames)."""
        if self.config.eval_mode == "interval":
            held_out = set(range(0, num, max(1, self.config.eval_interval)))
        else:
            held_out = set(test_indices)
        if split == "train":
            indices = [i for i in range(num) if i not in held_out]
            return indices or list(range(num))  # a single-frame scene trains and evaluates on that frame
        return sorted(held_out)

    def _generate_dataparser_outputs(self, split: str = "train") -> DataparserOutputs:
        scene = load_nonrigid_scene(self.config.data)
        num = len(scene.image_paths)
        indices = self.split_indices(num, scene.test_indices, split)
        camera_to_worlds = torch.from_numpy(scene.camera_to_worlds).float()
        camera_to_worlds[..., 3] *= self.config.scale_factor
        bounds = torch.from_numpy(scene.bounds).float() * self.config.scale_factor
        times = torch.arange(num, dtype=torch.float32) / max(num - 1, 1)

        # The cameras look at content up to the far bound in front of them: pad their box by it.
        origins = camera_to_worlds[:, :, 3]
        pad = float(bounds[:, 1].max())
        aabb = torch.stack([origins.min(0).values - pad, origins.max(0).values + pad])
        idx = torch.tensor(indices, dtype=torch.long)
        cameras = Cameras(
            camera_to_worlds=camera_to_worlds[idx],
            fx=scene.focal,
            fy=scene.focal,
            cx=scene.width / 2.0,
            cy=scene.height / 2.0,
            width=scene.width,
            height=scene.height,
            camera_type=CameraType.PERSPECTIVE,
            times=times[idx],
        )
        return DataparserOutputs(
            image_filenames=[scene.image_paths[i] for i in indices],
            cameras=cameras,
            scene_box=SceneBox(aabb=aabb),
            dataparser_scale=self.config.scale_factor,
            metadata={"near_far": bounds[idx], "frame_indices": idx},
        )
