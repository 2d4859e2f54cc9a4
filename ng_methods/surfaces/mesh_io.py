"""Vertex colours, the map to world coordinates, and binary ``.ply`` files (plyfile).

World coordinates: NeuS-style scenes are normalised into the unit sphere; ``scale_mat`` (4x4, the dataparser's
``metadata["scale_mat"]``) maps the normalised scene to the world (millimetres on DTU). NeuS writes its evaluation
meshes in world space as ``v * scale_mat[0, 0] + scale_mat[:3, 3]`` (``exp_runner.py:337`` @6e0a230); we apply the
full affine map, which is the same for NeuS's scale-and-translate matrices and also right for any other affine one
(a reflection flips the face winding back to outward).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8
from torch import Tensor

ColorFunction = Callable[[Float[Tensor, "n 3"]], Float[Tensor, "n 3"]]


class MeshFileError(ValueError):
    """A mesh / point-cloud file is missing or malformed; the message names the file."""


def vertex_colors(
    color_fn: ColorFunction,
    vertices: Float[Tensor, "v 3"],
    chunk: int = 64**3,
    device: Union[str, torch.device] = "cpu",
) -> UInt8[np.ndarray, "v 3"]:
    """``color_fn`` (RGB in [0, 1]) at the vertices, ``chunk`` vertices per call, as uint8 RGB.

    Gradients stay enabled (a model may colour along its SDF normal, computed by autograd); outputs are detached.
    """
    colors = []
    for start in range(0, len(vertices), chunk):
        rgb = color_fn(vertices[start : start + chunk].to(device)).detach().float().cpu()
        colors.append(rgb.reshape(-1, 3))
    if not colors:
        return np.zeros((0, 3), dtype=np.uint8)
    rgb = torch.cat(colors).nan_to_num(0.0).clamp(0.0, 1.0)
    return (rgb * 255.0).round().to(torch.uint8).numpy()


def to_world(
    vertices: Float[np.ndarray, "v 3"], faces: Int[np.ndarray, "f 3"], scale_mat: Float[np.ndarray, "4 4"]
) -> Tuple[Float[np.ndarray, "v 3"], Int[np.ndarray, "f 3"]]:
    """Map scene (normalised) coordinates to world coordinates with the affine 4x4 ``scale_mat``.

    Returns float64 vertices and the faces, re-wound if the map is a reflection (so normals stay outward).
    """
    scale_mat = np.asarray(scale_mat, dtype=np.float64)
    if scale_mat.shape != (4, 4) or not np.allclose(scale_mat[3], [0, 0, 0, 1]):
        raise ValueError(f"scale_mat must be an affine 4x4 matrix (last row 0 0 0 1), got {scale_mat}")
    world = np.asarray(vertices, dtype=np.float64) @ scale_mat[:3, :3].T + scale_mat[:3, 3]
    faces = np.asarray(faces)
    if np.linalg.det(scale_mat[:3, :3]) < 0:
        faces = faces[:, ::-1].copy()
    return world, faces


def write_ply(
    path: Union[str, Path],
    vertices: Float[np.ndarray, "v 3"],
    faces: Optional[Int[np.ndarray, "f 3"]] = None,
    colors: Optional[UInt8[np.ndarray, "v 3"]] = None,
) -> None:
    """Write a binary little-endian ``.ply``: float32 x y z (+ uint8 red green blue), int32 vertex_indices."""
    from plyfile import PlyData, PlyElement

    vertices = np.asarray(vertices)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex_table = np.empty(len(vertices), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertex_table[name] = vertices[:, axis]
    if colors is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            vertex_table[name] = np.asarray(colors)[:, channel]
    elements = [PlyElement.describe(vertex_table, "vertex")]
    if faces is not None:
        face_table = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
        face_table["vertex_indices"] = np.asarray(faces, dtype=np.int32)
        elements.append(PlyElement.describe(face_table, "face"))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    PlyData(elements, text=False).write(str(path))


def read_ply(path: Union[str, Path]) -> dict:
    """Read a ``.ply`` mesh or point cloud.

    Returns:
        ``{"vertices": float64 [v, 3], "faces": int64 [f, 3] or None, "colors": uint8 [v, 3] or None,
        "normals": float64 [v, 3] or None}``.

    Raises:
        MeshFileError: the file is missing, not a PLY, has no vertices with x/y/z, or has non-triangle faces.
    """
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise MeshFileError(f"{path}: no such file (expected a .ply mesh or point cloud)")
    try:
        ply = PlyData.read(str(path))
    except Exception as error:  # plyfile raises several types for a bad header/body
        raise MeshFileError(f"{path}: not a readable PLY file ({error})") from error
    names = [element.name for element in ply.elements]
    if "vertex" not in names or not {"x", "y", "z"} <= set(ply["vertex"].data.dtype.names):
        raise MeshFileError(f"{path}: has no 'vertex' element with x, y, z properties (elements: {names})")
    table = ply["vertex"].data
    result = {"vertices": np.stack([table[c] for c in "xyz"], -1).astype(np.float64)}
    result["colors"] = _columns(table, ("red", "green", "blue"), np.uint8)
    result["normals"] = _columns(table, ("nx", "ny", "nz"), np.float64)
    result["faces"] = _read_faces(path, ply) if "face" in names else None
    return result


def _columns(table: np.ndarray, names: Tuple[str, ...], dtype) -> Optional[np.ndarray]:
    """The named vertex properties stacked as [v, len(names)], or None if one is missing."""
    if not set(names) <= set(table.dtype.names):
        return None
    return np.stack([table[name] for name in names], -1).astype(dtype)


def _read_faces(path: Path, ply) -> Int[np.ndarray, "f 3"]:
    table = ply["face"].data
    name = next((n for n in ("vertex_indices", "vertex_index") if n in table.dtype.names), None)
    if name is None:
        raise MeshFileError(f"{path}: the 'face' element has no vertex_indices property")
    if len(table) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    try:
        faces = np.vstack(table[name]).astype(np.int64)
    except ValueError as error:
        message = f"{path}: faces have different numbers of vertices; only triangles are supported"
        raise MeshFileError(message) from error
    if faces.shape[1] != 3:
        raise MeshFileError(f"{path}: faces have {faces.shape[1]} vertices; only triangle meshes are supported")
    return faces
