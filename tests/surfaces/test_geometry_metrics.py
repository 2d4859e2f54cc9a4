"""Chamfer (DTU protocol), mask IoU and normal consistency on known inputs."""

import numpy as np
import pytest
from scipy.io import savemat
from scipy.spatial import cKDTree

from ng_methods.surfaces.geometry_metrics import (
    accumulation_mask_iou,
    chamfer_distance,
    downsample_points,
    dtu_chamfer,
    load_dtu_observation,
    mask_iou,
    normal_consistency,
    sample_mesh_surface,
)

SQUARE_VERTICES = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], dtype=np.float64)
SQUARE_FACES = np.array([[0, 1, 2], [0, 2, 3]])


def official_rule_samples(vertices, faces, density):
    """The DTU script's per-triangle sampling written out triangle by triangle (eval.py:9-18, 52-70)."""
    points = [vertices]
    for face in faces:
        origin = vertices[face[0]]
        edge1, edge2 = vertices[face[1]] - origin, vertices[face[2]] - origin
        l1, l2, area2 = np.linalg.norm(edge1), np.linalg.norm(edge2), np.linalg.norm(np.cross(edge1, edge2))
        if area2 == 0:
            continue
        thr = density * np.sqrt(l1 * l2 / area2)
        n1, n2 = np.floor(l1 / thr), np.floor(l2 / thr)
        for i in range(int(n1) + 1):
            for j in range(int(n2) + 1):
                a, b = (i + 0.5) / max(n1, 1e-7), (j + 0.5) / max(n2, 1e-7)
                if a + b < 1:
                    points.append((origin + a * edge1 + b * edge2)[None])
    return np.concatenate(points)


def test_sampling_follows_the_official_rule():
    rng = np.random.default_rng(1)
    vertices = rng.uniform(0, 3, size=(8, 3))
    faces = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6], [5, 6, 7], [0, 0, 1]])  # the last one is degenerate
    ours = sample_mesh_surface(vertices, faces, density=0.2, faces_per_chunk=2)
    expected = official_rule_samples(vertices, faces, 0.2)
    assert len(ours) == len(expected)
    np.testing.assert_allclose(np.sort(ours, axis=0), np.sort(expected, axis=0), atol=1e-12)


def test_downsampling_leaves_no_two_points_closer_than_the_radius():
    points = sample_mesh_surface(SQUARE_VERTICES, SQUARE_FACES, density=0.1)
    thinned = downsample_points(points, radius=0.2)
    distances, _ = cKDTree(thinned).query(thinned, k=2)
    assert distances[:, 1].min() >= 0.2
    covering, _ = cKDTree(thinned).query(points, k=1)
    assert covering.max() <= 0.2  # every dropped point has a kept one within the radius


def test_chamfer_of_identical_sets_is_zero():
    points = downsample_points(sample_mesh_surface(SQUARE_VERTICES, SQUARE_FACES))
    result = dtu_chamfer(points, None, points)  # point-cloud mode: thinning a thinned set keeps it whole
    assert result["accuracy"] == 0 and result["completeness"] == 0 and result["chamfer"] == 0
    assert result["num_data_points"] == len(points)
    # a mesh against a denser sampling of itself: both directions within the sampling distances
    mesh_result = dtu_chamfer(SQUARE_VERTICES, SQUARE_FACES, sample_mesh_surface(SQUARE_VERTICES, SQUARE_FACES, 0.05))
    assert mesh_result["accuracy"] < 0.05 and mesh_result["completeness"] < 0.2


def test_chamfer_of_a_shifted_set_equals_the_shift():
    points = downsample_points(sample_mesh_surface(SQUARE_VERTICES, SQUARE_FACES))
    result = chamfer_distance(points, points + [0.0, 0.0, 0.3])
    assert result["accuracy"] == pytest.approx(0.3) and result["chamfer"] == pytest.approx(0.3)
    # the mesh against a shifted reference cloud: the shift, up to the 0.2 sampling
    mesh_result = dtu_chamfer(SQUARE_VERTICES, SQUARE_FACES, points + [0.0, 0.0, 1.0])
    assert mesh_result["chamfer"] == pytest.approx(1.0, abs=0.03)


def test_distances_above_max_dist_are_dropped():
    points = downsample_points(sample_mesh_surface(SQUARE_VERTICES, SQUARE_FACES))
    far_cluster = points[:50] + [0.0, 0.0, 25.0]
    result = chamfer_distance(points, np.concatenate([points, far_cluster]), max_dist=20.0)
    assert result["completeness"] == 0 and result["chamfer"] == 0
    counted = chamfer_distance(points, np.concatenate([points, far_cluster]), max_dist=30.0)
    assert counted["completeness"] > 0


def test_observation_mask_and_ground_plane(tmp_path):
    observed = np.zeros((20, 20, 20), dtype=bool)
    observed[:, :, :10] = True  # only z < ~5 is observed (Res 0.5, BB from 0)
    (tmp_path / "ObsMask").mkdir()
    box = [[0, 0, 0], [10, 10, 10]]
    savemat(tmp_path / "ObsMask" / "ObsMask7_10.mat", {"ObsMask": observed, "BB": box, "Res": 0.5})
    savemat(tmp_path / "ObsMask" / "Plane7.mat", {"P": [[0, 0, 1, -1]]})  # above = z > 1
    observation = load_dtu_observation(tmp_path, 7)
    data = np.array([[5.0, 5.0, 2.0], [5.0, 5.0, 8.0]])  # the second is in an unobserved voxel
    reference = np.array([[5.0, 5.0, 2.5], [5.0, 5.0, 0.0]])  # the second is below the ground plane
    result = dtu_chamfer(data, None, reference, observation=observation)
    assert result["accuracy"] == pytest.approx(0.5) and result["completeness"] == pytest.approx(0.5)
    assert result["num_data_points"] == 1 and result["num_reference_points"] == 1
    with pytest.raises(FileNotFoundError, match="ObsMask8_10.mat"):
        load_dtu_observation(tmp_path, 8)


def test_mask_iou_of_known_masks():
    predicted = np.zeros((4, 4), dtype=bool)
    predicted[:2, :2] = True
    reference = np.zeros((4, 4), dtype=bool)
    reference[:2, :3] = True
    assert mask_iou(predicted, reference) == pytest.approx(4 / 6)
    assert mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    accumulation = np.where(predicted, 0.9, 0.4)
    result = accumulation_mask_iou([accumulation, reference * 1.0], [reference * 255, reference * 255])
    assert result["mask_iou_per_image"] == pytest.approx([4 / 6, 1.0])
    assert result["mask_iou"] == pytest.approx((4 / 6 + 1) / 2)


def test_normal_consistency():
    points = np.random.default_rng(0).normal(size=(100, 3))
    normals = points / np.linalg.norm(points, axis=-1, keepdims=True)
    assert normal_consistency(points, normals, points, -normals) == pytest.approx(1.0)  # orientation-free
    tangent = np.cross(normals, [0.0, 0.0, 1.0])
    assert normal_consistency(points, normals, points, tangent) == pytest.approx(0.0, abs=1e-9)
