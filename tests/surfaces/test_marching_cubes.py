"""Mesh extraction from an analytic sphere SDF: accuracy, closedness, orientation, chunk independence."""

import numpy as np
import pytest
import torch
import trimesh

from ng_methods.surfaces.marching_cubes import evaluate_sdf_volume, extract_mesh

RADIUS = 0.6
BOUNDS = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
RESOLUTION = 24


def sphere_sdf(positions: torch.Tensor) -> torch.Tensor:
    return positions.norm(dim=-1, keepdim=True) - RADIUS


def test_sphere_vertices_lie_within_one_voxel_of_the_radius():
    vertices, faces = extract_mesh(sphere_sdf, BOUNDS, RESOLUTION, chunk=4096)
    voxel = 2.0 / (RESOLUTION - 1)
    assert vertices.dtype == torch.float32 and faces.dtype == torch.int64
    assert len(faces) > 100
    assert torch.all((vertices.norm(dim=-1) - RADIUS).abs() < voxel)


def test_sphere_mesh_is_closed_and_outward_oriented():
    vertices, faces = extract_mesh(sphere_sdf, BOUNDS, RESOLUTION)
    mesh = trimesh.Trimesh(vertices.numpy(), faces.numpy(), process=False)
    assert mesh.is_watertight
    outward = np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center)
    assert np.all(outward > 0)
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.05)


@pytest.mark.parametrize("chunk", [1, 777, RESOLUTION**2, RESOLUTION**3 + 5])
def test_chunk_size_does_not_change_the_mesh(chunk):
    reference_vertices, reference_faces = extract_mesh(sphere_sdf, BOUNDS, 12, chunk=12**3)
    vertices, faces = extract_mesh(sphere_sdf, BOUNDS, 12, chunk=chunk)
    assert torch.equal(vertices, reference_vertices)
    assert torch.equal(faces, reference_faces)


def test_no_more_than_one_chunk_is_queried_at_a_time():
    sizes = []

    def recording_sdf(positions):
        sizes.append(len(positions))
        return sphere_sdf(positions)

    evaluate_sdf_volume(recording_sdf, BOUNDS, 10, chunk=64)
    assert max(sizes) == 64 and sum(sizes) == 10**3


def test_lattice_matches_linspace_per_axis():
    volume = evaluate_sdf_volume(lambda p: p[:, :1] + 10 * p[:, 1:2] + 100 * p[:, 2:3], BOUNDS, 5, chunk=7)
    axis = torch.linspace(-1, 1, 5).numpy()
    expected = axis[:, None, None] + 10 * axis[None, :, None] + 100 * axis[None, None, :]
    np.testing.assert_allclose(volume, expected, atol=1e-5)


def test_offset_bounds_and_level():
    shift = torch.tensor([0.3, -0.2, 0.1])
    bounds = BOUNDS * 0.5 + shift
    vertices, _ = extract_mesh(lambda p: (p - shift).norm(dim=-1, keepdim=True), bounds, 20, level=0.3)
    assert torch.all(((vertices - shift).norm(dim=-1) - 0.3).abs() < 1.0 / 19)


def test_sdf_without_surface_is_a_clear_error():
    with pytest.raises(ValueError, match="does not cross level 0"):
        extract_mesh(lambda p: p.norm(dim=-1, keepdim=True) + 1.0, BOUNDS, 8)


def test_non_finite_sdf_is_a_clear_error():
    def broken(positions):
        values = sphere_sdf(positions)
        values[0] = float("nan")
        return values

    with pytest.raises(ValueError, match="not finite"):
        extract_mesh(broken, BOUNDS, 8)


def test_wrong_sdf_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="expected \\[n, 1\\]"):
        extract_mesh(lambda p: p, BOUNDS, 8)
