"""Camera maths of the NeuS/IDR scene layout (``cameras_sphere.npz``), pure numpy.

IDR and NeuS store, per view ``i``, a projection ``world_mat_i`` (4x4, rows 0-2 = ``K [R | t]`` up to scale, world
-> pixels) and ``scale_mat_i`` (4x4, the *normalised* space -> world: the object's bounding sphere becomes the unit
sphere). NeuS (Totoro97/NeuS ``models/dataset.py``, ``load_K_Rt_from_P``, borrowed from IDR) computes
``P = (world_mat @ scale_mat)[:3, :4]``, decomposes it with ``cv2.decomposeProjectionMatrix`` into ``K``, ``R`` and
the homogeneous camera centre, divides ``K`` by ``K[2, 2]`` and uses ``[R^T | centre]`` as the (OpenCV-convention)
camera-to-world pose in the normalised space. This module does the same decomposition with an RQ factorisation of
its own (numpy only: no cv2 needed at run time) and converts the pose to nerfstudio's OpenGL convention (camera
looks along -z, y up), i.e. flips the y and z camera axes.

Pixel convention: ``K`` is used as given, with nerfstudio's pixel centres at ``i + 0.5``; NeuS casts its rays
through integer pixel coordinates, half a pixel away (0.5 px of 800x600). See ``docs/neus-data.md``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = [
    "OPENCV_TO_OPENGL",
    "compose_projection",
    "decompose_projection",
    "neus_cameras",
    "opencv_to_opengl",
    "rq_decomposition",
]

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])
"""Right-multiplying a camera-to-world rotation by this flips the camera's y and z axes (OpenCV <-> OpenGL)."""


def rq_decomposition(matrix: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``matrix`` [3, 3] = ``upper @ rotation`` with ``upper`` upper-triangular with a positive diagonal and
    ``rotation`` orthonormal (det +1 when ``det(matrix) > 0``).

    Uses numpy's QR on the row-and-column-reversed transpose (the standard RQ trick).
    """
    reverse = np.eye(3)[::-1]
    q, r = np.linalg.qr((reverse @ matrix).T)
    upper = reverse @ r.T @ reverse
    rotation = reverse @ q.T
    signs = np.diag(np.where(np.diag(upper) < 0, -1.0, 1.0))  # a positive diagonal; signs @ signs = I
    return upper @ signs, signs @ rotation


def decompose_projection(projection: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Split a camera projection into intrinsics and an OpenCV camera-to-world pose, as NeuS's ``load_K_Rt_from_P``.

    Args:
        projection: [3, 4] or [4, 4] (only rows 0-2 are used) world -> pixel projection ``s * K [R | t]``, any
            non-zero scale ``s`` (a negative one is undone: a projective matrix and its negative are one camera).

    Returns:
        ``intrinsics`` [3, 3] with ``intrinsics[2, 2] == 1`` (positive focal lengths; skew kept), and
        ``camera_to_world`` [4, 4] float64: rotation ``R^T`` (OpenCV axes: x right, y down, z forwards) and the
        camera centre ``-M^-1 p`` (the null space of the projection) as translation.

    Raises:
        ValueError: the 3x3 part ``M`` is singular or the matrix is not finite.
    """
    matrix = np.asarray(projection, dtype=np.float64)[:3, :4]
    if not np.isfinite(matrix).all():
        raise ValueError("the projection matrix has non-finite entries")
    left = matrix[:, :3]
    det = np.linalg.det(left)
    if abs(det) <= 1e-12 * max(np.abs(left).max(), 1e-300) ** 3:
        raise ValueError(f"the 3x3 part of the projection matrix is singular (det = {det:.3g})")
    if det < 0:
        matrix, left = -matrix, -left
    upper, rotation = rq_decomposition(left)
    camera_to_world = np.eye(4)
    camera_to_world[:3, :3] = rotation.T
    camera_to_world[:3, 3] = -np.linalg.solve(left, matrix[:, 3])
    return upper / upper[2, 2], camera_to_world


def compose_projection(intrinsics: np.ndarray, world_to_camera: np.ndarray) -> np.ndarray:
    """``K [R | t]`` [3, 4] from ``intrinsics`` [3, 3] and an OpenCV ``world_to_camera`` [3, 4] or [4, 4]."""
    return np.asarray(intrinsics, dtype=np.float64) @ np.asarray(world_to_camera, dtype=np.float64)[:3, :4]


def opencv_to_opengl(camera_to_world: np.ndarray) -> np.ndarray:
    """OpenCV-axes camera-to-world [..., 3 or 4, 4] -> nerfstudio's OpenGL axes (same centre, y and z flipped)."""
    out = np.array(camera_to_world, dtype=np.float64, copy=True)
    out[..., :3, :3] = out[..., :3, :3] @ OPENCV_TO_OPENGL
    return out


def neus_cameras(world_mats: np.ndarray, scale_mats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Cameras of NeuS views in the normalised space (the unit sphere of ``scale_mat``).

    Args:
        world_mats: [N, 3 or 4, 4] world -> pixel projections (``world_mat_i``).
        scale_mats: [N, 4, 4] normalised -> world transforms (``scale_mat_i``).

    Returns:
        ``intrinsics`` [N, 3, 3] (``K / K[2, 2]``) and ``camera_to_worlds`` [N, 3, 4] in nerfstudio's OpenGL
        convention, both float64.

    Raises:
        ValueError: from :func:`decompose_projection`, for the first bad view (its index in the message).
    """
    intrinsics, poses = [], []
    for i, (world_mat, scale_mat) in enumerate(zip(world_mats, scale_mats)):
        world_mat = np.asarray(world_mat, dtype=np.float64)
        projection = world_mat[:3, :4] @ np.asarray(scale_mat, dtype=np.float64)
        try:
            k, pose = decompose_projection(projection)
        except ValueError as e:
            raise ValueError(f"view {i}: {e}") from None
        intrinsics.append(k)
        poses.append(opencv_to_opengl(pose)[:3, :4])
    return np.stack(intrinsics), np.stack(poses)
