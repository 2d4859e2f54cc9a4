"""Camera side of ``llff-data``: reading ``poses_bounds.npy``, intrinsics from its hwf column, the LLFF -> OpenGL
axis conversion, orientation / centring / scaling of the world, and the scene box.

See :mod:`ng_methods.data.llff` for the conventions. Dataparser-level imports only (see ``ng_methods.data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch

from nerfstudio.cameras import camera_utils
from nerfstudio.utils.rich_utils import CONSOLE

from ng_methods.data.llff_images import POSES_FILE, image_size
from ng_methods.data.validation import DataValidationError, check_intrinsics, check_poses, format_list

__all__ = [
    "Intrinsics",
    "NormalizedPoses",
    "frusta_aabb",
    "intrinsics_from_hwf",
    "is_forward_facing",
    "load_poses_bounds",
    "normalize_poses",
    "scene_aabb",
    "split_poses_bounds",
]


@dataclass
class Intrinsics:
    """Per-image pinhole intrinsics, each [N, 1] (``width`` / ``height`` long, the rest float32)."""

    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: torch.Tensor
    height: torch.Tensor


@dataclass
class NormalizedPoses:
    """Poses and bounds in the output frame, and the map from the LLFF world frame (OpenGL camera axes) to it."""

    camera_to_worlds: torch.Tensor  # [N, 3, 4], OpenGL convention
    bounds: torch.Tensor  # [N, 2], output units
    transform: torch.Tensor  # [3, 4]
    scale: float


def load_poses_bounds(data: Path) -> np.ndarray:
    """``<data>/poses_bounds.npy`` as a float64 N x 17 array; a ``DataValidationError`` for anything else."""
    path = data / POSES_FILE
    if not data.is_dir():
        raise DataValidationError(f"LLFF data directory {data} does not exist (or is not a directory)")
    if not path.is_file():
        contents = sorted(p.name for p in data.iterdir())
        raise DataValidationError(
            f"File not found: {path} (LLFF scenes need {POSES_FILE}; {data} contains: "
            f"{format_list(contents, 10) or 'nothing'})"
        )
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError/OSError/EOFError/...
        raise DataValidationError(f"Cannot read {path} as a numpy array: {e}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        dtype = getattr(arr, "dtype", type(arr).__name__)
        raise DataValidationError(f"{path} must hold a numeric N x 17 array, got dtype {dtype}")
    if arr.ndim != 2 or arr.shape[1] != 17:
        raise DataValidationError(
            f"{path} has shape {tuple(arr.shape)}; expected N x 17 (per image: a 3x5 pose matrix flattened = "
            "3x4 camera-to-world + (h, w, focal) column, then near and far bounds)"
        )
    if arr.shape[0] == 0:
        raise DataValidationError(f"{path} has no rows (no cameras)")
    return arr.astype(np.float64)


def split_poses_bounds(arr: np.ndarray, poses_path: Path, names: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """``(poses [N, 3, 5], bounds [N, 2])`` of a poses_bounds array, after checking the poses, the hwf column and
    ``0 < near < far`` (``names``: the image of each row, for messages)."""
    num = arr.shape[0]
    poses = arr[:, :15].reshape(num, 3, 5)
    check_poses(poses[:, :, :4], source=poses_path, names=list(names), what="image")
    hwf = poses[:, :, 4]
    check_intrinsics(poses_path, list(names), height=hwf[:, 0], width=hwf[:, 1], focal=hwf[:, 2])
    bounds = arr[:, 15:17]
    bad = np.flatnonzero(~np.isfinite(bounds).all(axis=1) | (bounds[:, 0] <= 0) | (bounds[:, 1] <= bounds[:, 0]))
    if len(bad):
        i = bad[0]
        raise DataValidationError(
            f"Bad near/far bounds {bounds[i].tolist()} in {poses_path} row {i} ({names[i]}): need "
            f"0 < near < far, finite ({len(bad)} of {num} rows affected)"
        )
    return poses, bounds


def intrinsics_from_hwf(hwf: np.ndarray, images: List[Path], folder: Path, poses_path: Path) -> Intrinsics:
    """Pinhole intrinsics of each loaded image: the row's ``(h, w, focal)`` scaled to the image file's size, the
    principal point at the image centre. Raises if an image's aspect ratio differs from its row's."""
    sizes = np.array([image_size(p, folder) for p in images], dtype=np.float64)  # (w, h)
    w_img, h_img = sizes[:, 0], sizes[:, 1]
    h_full, w_full, focal = hwf[:, 0], hwf[:, 1], hwf[:, 2]
    sx, sy = w_img / w_full, h_img / h_full
    mismatch = np.abs(w_img - w_full * sy) > np.maximum(1.0, 0.01 * w_img)
    if mismatch.any():
        i = int(np.flatnonzero(mismatch)[0])
        raise DataValidationError(
            f"Image {images[i]} is {int(w_img[i])}x{int(h_img[i])} (w x h) but {poses_path} row {i} describes a "
            f"{int(w_full[i])}x{int(h_full[i])} image (hwf = {hwf[i].tolist()}): the aspect ratios differ, so the "
            "intrinsics cannot be scaled (is the image cropped, or rotated by its EXIF orientation?)"
        )
    if len(set(map(tuple, sizes.tolist()))) > 1:
        CONSOLE.log(f"llff-data: images in {folder} have different sizes; using per-image intrinsics")
    return Intrinsics(
        fx=torch.from_numpy(focal * sx).float()[:, None],
        fy=torch.from_numpy(focal * sy).float()[:, None],
        cx=torch.from_numpy(w_img / 2.0).float()[:, None],
        cy=torch.from_numpy(h_img / 2.0).float()[:, None],
        width=torch.from_numpy(w_img).long()[:, None],
        height=torch.from_numpy(h_img).long()[:, None],
    )


def normalize_poses(
    poses: np.ndarray,
    bounds: np.ndarray,
    orientation_method: Literal["up", "none"],
    center_method: Literal["focus", "poses", "none"],
    bd_factor: Optional[float],
    scale_factor: float,
) -> NormalizedPoses:
    """LLFF camera axes [down, right, backwards] -> OpenGL [right, up, backwards]; then nerfstudio's
    ``auto_orient_and_center_poses``; then LLFF's scaling ``1 / (min near * bd_factor)`` times ``scale_factor``."""
    num = poses.shape[0]
    c2w = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
    poses44 = torch.eye(4, dtype=torch.float32).repeat(num, 1, 1)
    poses44[:, :3, :] = torch.from_numpy(c2w).float()
    c2w_t, transform = camera_utils.auto_orient_and_center_poses(
        poses44, method=orientation_method, center_method=center_method
    )
    scale = float(scale_factor)
    if bd_factor is not None:
        if bd_factor <= 0:
            raise DataValidationError(f"bd_factor must be positive (or None), got {bd_factor}")
        scale /= float(bounds[:, 0].min()) * bd_factor
    c2w_t = c2w_t[:, :3, :].clone()
    c2w_t[:, :, 3] *= scale
    bounds_t = torch.from_numpy(bounds * scale).float()
    return NormalizedPoses(camera_to_worlds=c2w_t, bounds=bounds_t, transform=transform.float(), scale=scale)


def is_forward_facing(c2w: torch.Tensor) -> bool:
    """Whether the viewing directions agree: |mean view direction| > 0.9 (OpenGL cameras look along -z)."""
    view_dirs = -c2w[:, :, 2]
    return bool(torch.linalg.norm(view_dirs.mean(dim=0)) > 0.9)


def scene_aabb(
    scene_scale: Optional[float], c2w: torch.Tensor, intrinsics: Intrinsics, bounds: torch.Tensor
) -> torch.Tensor:
    """[2, 3] scene box: [-s, s]^3 for ``scene_scale=s``, else :func:`frusta_aabb`."""
    if scene_scale is not None:
        s = float(scene_scale)
        return torch.tensor([[-s, -s, -s], [s, s, s]], dtype=torch.float32)
    i = intrinsics
    return frusta_aabb(c2w, i.fx, i.fy, i.width, i.height, bounds)


def frusta_aabb(
    c2w: torch.Tensor,
    fx: torch.Tensor,
    fy: torch.Tensor,
    width: torch.Tensor,
    height: torch.Tensor,
    bounds: torch.Tensor,
) -> torch.Tensor:
    """Axis-aligned box around the camera centres and each camera's frustum between its near and far bound."""
    half_x = (width.float() / 2.0) / fx  # [N, 1], tan of half the horizontal field of view
    half_y = (height.float() / 2.0) / fy
    signs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # [4, 2]
    pts = [c2w[:, :, 3]]
    for k in range(2):
        depth = bounds[:, k : k + 1]  # [N, 1]
        x = signs[None, :, 0] * half_x * depth  # [N, 4]
        y = signs[None, :, 1] * half_y * depth
        z = -depth.expand_as(x)
        local = torch.stack([x, y, z], dim=-1)  # [N, 4, 3], OpenGL camera coordinates
        world = torch.einsum("nij,nkj->nki", c2w[:, :, :3], local) + c2w[:, None, :, 3]
        pts.append(world.reshape(-1, 3))
    allpts = torch.cat(pts, dim=0)
    return torch.stack([allpts.min(dim=0).values, allpts.max(dim=0).values])
