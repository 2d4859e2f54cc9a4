"""Mesh extraction from a signed distance field: blocked evaluation on a lattice, then marching cubes.

Design (one of the two options of issue 11): the SDF is evaluated ``chunk`` lattice points at a time and written
into ONE float32 volume of ``resolution**3`` values (512^3 = 512 MiB), then scikit-image's maintained
``measure.marching_cubes`` (Lewiner) runs once on the whole volume. At no time are more than ``chunk`` points (and
their SDF values) materialised besides the volume. This is what NeuS does (``extract_fields`` in
``models/renderer.py:10-25`` @6e0a230, 64^3-point blocks into one float32 volume, then marching cubes), and it
makes the result independent of the chunk size by construction: per-block marching cubes with overlap and
vertex stitching would save the volume but not the time, and could differ from one chunking to another.

Lattice: point ``(i, j, k)`` is ``bounds[0] + (i, j, k) / (resolution - 1) * (bounds[1] - bounds[0])``, i.e.
``torch.linspace`` per axis, as NeuS; vertices are mapped back with the same affine map
(``models/renderer.py:35``).

Orientation: SDF negative inside. With scikit-image's default ``gradient_direction="descent"`` the faces of such
a volume come out counter-clockwise seen from outside: their right-hand-rule normals point outwards, away from the
negative region, and the signed volume is positive (checked on a sphere in ``tests/surfaces/test_marching_cubes.py``;
``"ascent"`` gives inward normals). NeuS instead negates the SDF for PyMCubes (``renderer.py:385``), whose winding
convention differs; the resulting surface is the same.
"""

from __future__ import annotations

from typing import Callable, Tuple, Union

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

SdfFunction = Callable[[Float[Tensor, "n 3"]], Float[Tensor, "n 1"]]

DEFAULT_CHUNK = 64**3
"""SDF queries per call: NeuS's 64^3-point blocks (``models/renderer.py:11`` @6e0a230)."""


def lattice_axes(bounds: Float[Tensor, "2 3"], resolution: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The three float32 axes of the lattice, ``resolution`` values each, from ``bounds[0]`` to ``bounds[1]``."""
    bounds = torch.as_tensor(bounds, dtype=torch.float32).cpu()
    if bounds.shape != (2, 3) or not bool(torch.all(bounds[1] > bounds[0])):
        raise ValueError(f"bounds must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] with max > min, got {bounds}")
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    return tuple(torch.linspace(float(bounds[0, d]), float(bounds[1, d]), resolution) for d in range(3))


@torch.no_grad()
def evaluate_sdf_volume(
    sdf_fn: SdfFunction,
    bounds: Float[Tensor, "2 3"],
    resolution: int,
    chunk: int = DEFAULT_CHUNK,
    device: Union[str, torch.device] = "cpu",
) -> np.ndarray:
    """SDF values on the lattice, ``chunk`` points per call of ``sdf_fn``.

    Returns:
        float32 array [resolution, resolution, resolution]; entry ``[i, j, k]`` is the SDF at
        ``(x_i, y_j, z_k)``.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    # the axes are computed on the CPU (exact linspace values) and moved once; lattice points are built on device
    xs, ys, zs = (axis.to(device) for axis in lattice_axes(bounds, resolution))
    volume = np.empty(resolution**3, dtype=np.float32)
    for start in range(0, resolution**3, chunk):
        flat = torch.arange(start, min(start + chunk, resolution**3), device=device)
        positions = torch.stack(
            [xs[flat // resolution**2], ys[(flat // resolution) % resolution], zs[flat % resolution]], dim=-1
        )
        values = sdf_fn(positions)
        if values.shape not in ((len(flat), 1), (len(flat),)):
            raise ValueError(f"sdf_fn returned shape {tuple(values.shape)} for {len(flat)} points; expected [n, 1]")
        volume[start : start + len(flat)] = values.reshape(-1).float().cpu().numpy()
    volume = volume.reshape(resolution, resolution, resolution)
    bad = int(np.count_nonzero(~np.isfinite(volume)))
    if bad:
        raise ValueError(f"the SDF is not finite at {bad} of {volume.size} lattice points")
    return volume


def extract_mesh(
    sdf_fn: SdfFunction,
    bounds: Float[Tensor, "2 3"],
    resolution: int,
    chunk: int = DEFAULT_CHUNK,
    level: float = 0.0,
    device: Union[str, torch.device] = "cpu",
) -> Tuple[Float[Tensor, "v 3"], Int[Tensor, "f 3"]]:
    """The ``level`` iso-surface of an SDF (negative inside) in ``bounds``, outward-oriented.

    Args:
        sdf_fn: positions [n, 3] (scene coordinates, on ``device``) -> SDF [n, 1].
        bounds: [[xmin, ymin, zmin], [xmax, ymax, zmax]] of the lattice.
        resolution: lattice points per axis.
        chunk: SDF queries per call (peak memory besides the float32 volume).
        level: iso-value (NeuS ``--mcube_threshold``, default 0).
        device: where the query positions are sent.

    Returns:
        vertices [v, 3] float32 (scene coordinates) and faces [f, 3] int64 (counter-clockwise seen from outside).

    Raises:
        ValueError: the SDF does not cross ``level`` inside ``bounds`` (no surface to extract).
    """
    from skimage import measure

    volume = evaluate_sdf_volume(sdf_fn, bounds, resolution, chunk, device)
    low, high = float(volume.min()), float(volume.max())
    if not low < level < high:
        raise ValueError(
            f"the SDF does not cross level {level} inside the bounds (values in [{low:.4g}, {high:.4g}] on the "
            f"{resolution}^3 lattice): no surface to extract"
        )
    vertices, faces, _, _ = measure.marching_cubes(volume, level=level, gradient_direction="descent")
    bounds = torch.as_tensor(bounds, dtype=torch.float64).cpu().numpy()
    vertices = vertices / (resolution - 1.0) * (bounds[1] - bounds[0])[None, :] + bounds[0][None, :]
    return torch.from_numpy(vertices.astype(np.float32)), torch.from_numpy(faces.astype(np.int64))
