"""PLY round trip with colours, vertex colours in chunks, the world-coordinate map."""

import numpy as np
import pytest
import torch
import trimesh

from ng_methods.surfaces.marching_cubes import extract_mesh
from ng_methods.surfaces.mesh_io import MeshFileError, read_ply, to_world, vertex_colors, write_ply


def small_sphere():
    bounds = torch.tensor([[-1.0] * 3, [1.0] * 3])
    vertices, faces = extract_mesh(lambda p: p.norm(dim=-1, keepdim=True) - 0.5, bounds, 10)
    return vertices, faces


def test_ply_round_trip_with_colours(tmp_path):
    vertices, faces = small_sphere()
    colors = vertex_colors(lambda p: (p + 1) / 2, vertices, chunk=17)
    path = tmp_path / "sub" / "mesh.ply"
    write_ply(path, vertices.numpy(), faces.numpy(), colors)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian")
    loaded = read_ply(path)
    np.testing.assert_allclose(loaded["vertices"], vertices.numpy(), atol=1e-6)
    np.testing.assert_array_equal(loaded["faces"], faces.numpy())
    np.testing.assert_array_equal(loaded["colors"], colors)
    other = trimesh.load(path, process=False)  # an independent reader agrees
    np.testing.assert_array_equal(other.visual.vertex_colors[:, :3], colors)
    assert other.is_watertight


def test_vertex_colours_are_chunked_clamped_and_rounded():
    calls = []

    def colour(positions):
        calls.append(len(positions))
        return torch.tensor([[-0.5, 0.5, 2.0]]).expand(len(positions), 3)

    colors = vertex_colors(colour, torch.zeros(10, 3), chunk=4)
    assert calls == [4, 4, 2]
    np.testing.assert_array_equal(colors, np.tile([0, 128, 255], (10, 1)))


def test_world_coordinates_with_a_scale_mat():
    scale_mat = np.array([[200.0, 0, 0, -28.0], [0, 200.0, 0, -27.9], [0, 0, 200.0, 640.4], [0, 0, 0, 1]])
    vertices, faces = small_sphere()
    world, world_faces = to_world(vertices.numpy(), faces.numpy(), scale_mat)
    expected = vertices.double().numpy() * scale_mat[0, 0] + scale_mat[:3, 3]  # NeuS exp_runner.py:337
    np.testing.assert_allclose(world, expected, rtol=1e-12)
    np.testing.assert_array_equal(world_faces, faces.numpy())


def test_reflecting_scale_mat_keeps_normals_outward():
    vertices, faces = small_sphere()
    reflect = np.diag([-2.0, 2.0, 2.0, 1.0])
    world, world_faces = to_world(vertices.numpy(), faces.numpy(), reflect)
    mesh = trimesh.Trimesh(world, world_faces, process=False)
    assert mesh.volume > 0
    assert np.all(np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center) > 0)


def test_non_affine_scale_mat_is_rejected():
    with pytest.raises(ValueError, match="affine"):
        to_world(np.zeros((1, 3)), np.zeros((0, 3), dtype=int), np.ones((4, 4)))


def test_bad_ply_files_name_the_file(tmp_path):
    with pytest.raises(MeshFileError, match="missing.ply: no such file"):
        read_ply(tmp_path / "missing.ply")
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"not a ply at all")
    with pytest.raises(MeshFileError, match="garbage.ply: not a readable PLY"):
        read_ply(garbage)


def test_point_cloud_with_normals(tmp_path):
    points = np.random.default_rng(0).normal(size=(20, 3))
    table = np.empty(20, dtype=[(n, "f4") for n in ("x", "y", "z", "nx", "ny", "nz")])
    for i, name in enumerate(("x", "y", "z")):
        table[name] = points[:, i]
        table["n" + name] = -points[:, i]
    from plyfile import PlyData, PlyElement

    PlyData([PlyElement.describe(table, "vertex")]).write(str(tmp_path / "cloud.ply"))
    loaded = read_ply(tmp_path / "cloud.ply")
    assert loaded["faces"] is None and loaded["colors"] is None
    np.testing.assert_allclose(loaded["normals"], -points, atol=1e-6)
