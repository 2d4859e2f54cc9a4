"""Mask-based mesh culling, as in the DTU evaluation of 2DGS / NeuS-style methods (``cull_scan``).

The rule, from ``scripts/eval_dtu/evaluate_single_scene.py`` of hbb1/2d-gaussian-splatting @1920a23:

* every vertex is projected into every camera of the scan (all images of ``instance_dir``, lines 22-37, 61-74);
* a projection counts as "inside the image" when it lies strictly inside the pixel-centre range (lines 75-77);
* the mask is foreground where its first channel is non-zero (``mask / 256 > 0``, line 80), dilated with a disk of
  radius 24 pixels at DTU's 1600x1200 (``binary_dilation(maski, disk(24))``, line 81; "similar to unisurf");
* a vertex is kept iff, in every view where it projects inside the image, the dilated mask is foreground there
  (nearest pixel; lines 83-91); views it does not project into do not vote;
* a face is kept iff all three of its vertices are kept (line 92); culled vertices are removed (lines 94-95).

Differences, both immaterial on DTU (every camera sees the object in front of it): a vertex must also be in front of
the camera (positive depth) to count as inside the image (the official code divides by ``z + 1e-6`` whatever its
sign); and the pixel grid follows nerfstudio's cameras (pixel ``(u, v)`` covers ``[u, u+1) x [v, v+1)``), while the
official one puts pixel centres on integers: a half-pixel shift, well inside the 24-pixel dilation.

The dilation radius is given in pixels of the masks at hand; :func:`dtu_dilation_radius` scales the official 24 px
at 1600 px width to downscaled masks.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

DTU_DILATION_RADIUS = 24
"""Disk radius (pixels) of the mask dilation at DTU's full 1600 px width (``evaluate_single_scene.py:81``)."""
DTU_IMAGE_WIDTH = 1600
"""DTU's full image width (``evaluate_single_scene.py:48``, ``W, H = 1600, 1200``)."""


def dtu_dilation_radius(mask_width: int) -> int:
    """The official 24 px dilation radius scaled to masks ``mask_width`` pixels wide (at least 1 px)."""
    return max(1, int(round(DTU_DILATION_RADIUS * mask_width / DTU_IMAGE_WIDTH)))


def dilate_mask(mask: np.ndarray, radius: int) -> Bool[np.ndarray, "h w"]:
    """Foreground (any non-zero value of the first channel) dilated by a disk of ``radius`` pixels."""
    from skimage.morphology import binary_dilation, disk

    foreground = np.asarray(mask)
    if foreground.ndim == 3:
        foreground = foreground[..., 0]
    foreground = foreground > 0
    return binary_dilation(foreground, disk(radius)) if radius > 0 else foreground


def project_to_pixels(
    points: Float[Tensor, "v 3"],
    camera_to_world: Float[Tensor, "3 4"],
    intrinsics: Float[Tensor, "4"],
) -> Tuple[Float[Tensor, "v 2"], Float[Tensor, "v"]]:
    """Pixel coordinates (u right, v down; pixel (i, j) covers [i, i+1) x [j, j+1)) and depth of ``points`` in a
    nerfstudio camera (OpenGL axes: x right, y up, looking down -z); ``intrinsics`` is (fx, fy, cx, cy)."""
    rotation, origin = camera_to_world[:, :3], camera_to_world[:, 3]
    in_camera = (points - origin) @ rotation  # R^T (p - t), row-vector form
    depth = -in_camera[:, 2]
    safe_depth = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
    fx, fy, cx, cy = intrinsics
    u = fx * in_camera[:, 0] / safe_depth + cx
    v = -fy * in_camera[:, 1] / safe_depth + cy
    return torch.stack([u, v], dim=-1), depth


def vertices_inside_masks(
    vertices: Float[Tensor, "v 3"],
    camera_to_worlds: Float[Tensor, "n 3 4"],
    intrinsics: Float[Tensor, "n 4"],
    masks: Sequence[np.ndarray],
    dilation_radius: int,
) -> Bool[Tensor, "v"]:
    """Which vertices survive the culling rule (module docstring) for these cameras and masks.

    Args:
        vertices: scene coordinates, the same frame as the cameras.
        camera_to_worlds: nerfstudio camera poses.
        intrinsics: (fx, fy, cx, cy) per camera, in pixels of the masks.
        masks: one [h, w] or [h, w, c] array per camera; non-zero = foreground.
        dilation_radius: disk radius in mask pixels (:func:`dtu_dilation_radius` for the official one).
    """
    if not len(masks) == len(camera_to_worlds) == len(intrinsics):
        raise ValueError(f"{len(masks)} masks for {len(camera_to_worlds)} poses and {len(intrinsics)} intrinsics")
    vertices = torch.as_tensor(vertices, dtype=torch.float64)
    keep = torch.ones(len(vertices), dtype=torch.bool)
    for pose, camera_intrinsics, mask in zip(camera_to_worlds, intrinsics, masks):
        dilated = torch.from_numpy(dilate_mask(mask, dilation_radius))
        height, width = dilated.shape
        pixels, depth = project_to_pixels(vertices, pose.double(), camera_intrinsics.double())
        column, row = pixels[:, 0].floor(), pixels[:, 1].floor()
        inside = (depth > 0) & (column >= 0) & (column < width) & (row >= 0) & (row < height)
        foreground = torch.zeros_like(inside)
        foreground[inside] = dilated[row[inside].long(), column[inside].long()]
        keep &= ~inside | foreground
    return keep


def cull_mesh(
    vertices: Float[np.ndarray, "v 3"], faces: Int[np.ndarray, "f 3"], keep: Bool[np.ndarray, "v"]
) -> Tuple[Float[np.ndarray, "k 3"], Int[np.ndarray, "g 3"]]:
    """Drop the vertices not in ``keep`` and every face that uses one of them; re-index the remaining faces.

    Returns the kept vertices (in their original order) and faces.
    """
    keep = np.asarray(keep, dtype=bool)
    faces = np.asarray(faces)
    kept_faces = faces[keep[faces].all(axis=1)]
    new_index = np.cumsum(keep) - 1
    return np.asarray(vertices)[keep], new_index[kept_faces]
