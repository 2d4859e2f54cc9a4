"""Write tiny COLMAP binary models (cameras.bin, images.bin, points3D.bin) for dataparser tests."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np


def rotmat_to_qvec(rotation: np.ndarray) -> np.ndarray:
    """COLMAP ``qvec`` (w, x, y, z) of a rotation matrix (the inverse of its ``qvec2rotmat``)."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    return np.array([w, x, y, z])


def write_cameras(path: Path, width: int, height: int, params: Sequence[float], model_id: int = 1) -> None:
    """One camera (id 1); model 1 = PINHOLE (fx, fy, cx, cy), 0 = SIMPLE_PINHOLE (f, cx, cy), 4 = OPENCV."""
    data = struct.pack("<Q", 1) + struct.pack("<iiQQ", 1, model_id, width, height)
    data += struct.pack("<" + "d" * len(params), *params)
    path.write_bytes(data)


def write_images(path: Path, names: Sequence[str], world_to_cameras: Sequence[np.ndarray]) -> None:
    """Registered images with ids 1..N, camera 1 and no 2D points (``world_to_cameras``: [4, 4] OpenCV)."""
    data = struct.pack("<Q", len(names))
    for image_id, (name, w2c) in enumerate(zip(names, world_to_cameras), start=1):
        data += struct.pack("<idddddddi", image_id, *rotmat_to_qvec(w2c[:3, :3]), *w2c[:3, 3], 1)
        data += name.encode() + b"\x00" + struct.pack("<Q", 0)
    path.write_bytes(data)


def write_points(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Points with ids 1..N, error 0.5 and a track of one observation each."""
    data = struct.pack("<Q", len(xyz))
    for point_id, (p, c) in enumerate(zip(xyz, rgb), start=1):
        data += struct.pack("<QdddBBBd", point_id, *map(float, p), *map(int, c), 0.5)
        data += struct.pack("<Q", 1) + struct.pack("<ii", 1, 0)
    path.write_bytes(data)


def look_at_world_to_camera(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera [4, 4] (x right, y down, z forward) at ``center`` looking at ``target`` (world z up)."""
    forward = (target - center) / np.linalg.norm(target - center)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = rotation, -rotation @ center
    return w2c


def ring_of_cameras(count: int, radius: float = 4.0, height: float = 1.0) -> Tuple[np.ndarray, list]:
    """``count`` camera centres on a circle around the origin and their world-to-camera matrices."""
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    centers = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(count, height)], axis=1)
    return centers, [look_at_world_to_camera(c, np.zeros(3)) for c in centers]
