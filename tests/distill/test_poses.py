"""Novel poses: orbit poses look at the centre inside the training radius range; forward-facing poses stay near
the training poses; everything is a rotation, deterministic from the generator's seed."""

from __future__ import annotations

import math

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from ng_methods.distill.poses import infer_scene_kind, novel_cameras, sample_novel_poses, scene_centre


def _look_at(position: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    backward = torch.nn.functional.normalize(position - target, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(up, backward), dim=0)
    return torch.stack([right, torch.linalg.cross(backward, right), backward, position], dim=1)


def _orbit_poses(count: int = 12) -> torch.Tensor:
    """Blender-like: cameras on an upper hemisphere, radii 3.5-4.5, looking at (0.2, -0.1, 0.3), z up."""
    centre = torch.tensor([0.2, -0.1, 0.3])
    poses = []
    for i in range(count):
        azimuth, polar = 2 * math.pi * i / count, math.radians(30 + 40 * (i % 3) / 2)
        radius = 3.5 + (i % 4) / 3
        position = centre + radius * torch.tensor(
            [math.sin(polar) * math.cos(azimuth), math.sin(polar) * math.sin(azimuth), math.cos(polar)])
        poses.append(_look_at(position, centre, torch.tensor([0.0, 0.0, 1.0])))
    return torch.stack(poses)


def _forward_facing_poses(count: int = 8) -> torch.Tensor:
    """LLFF-like: cameras on a small plane patch, all looking roughly down -z, y up."""
    generator = torch.Generator().manual_seed(1)
    poses = []
    for _ in range(count):
        position = torch.cat([0.3 * torch.rand(2, generator=generator) - 0.15, torch.zeros(1)])
        target = torch.tensor([0.0, 0.0, -3.0]) + 0.2 * torch.randn(3, generator=generator)
        poses.append(_look_at(position, target, torch.tensor([0.0, 1.0, 0.0])))
    return torch.stack(poses)


def _is_rotation(c2w: torch.Tensor) -> bool:
    rotation = c2w[:, :, :3]
    identity = torch.eye(3).expand_as(rotation)
    return torch.allclose(rotation.transpose(1, 2) @ rotation, identity, atol=1e-5) and bool(
        (torch.linalg.det(rotation) > 0.99).all())


def test_scene_kind_is_inferred_from_viewing_directions():
    assert infer_scene_kind(_orbit_poses()) == "sphere"
    assert infer_scene_kind(_forward_facing_poses()) == "forward_facing"


def test_scene_centre_is_where_the_optical_axes_meet():
    torch.testing.assert_close(scene_centre(_orbit_poses()), torch.tensor([0.2, -0.1, 0.3]), atol=1e-4, rtol=0)


def test_sphere_poses_look_at_the_centre_within_the_training_radii():
    train = _orbit_poses()
    poses = sample_novel_poses(train, 200, torch.Generator().manual_seed(0), "sphere")
    assert poses.shape == (200, 3, 4) and _is_rotation(poses)
    centre = torch.tensor([0.2, -0.1, 0.3])
    offsets = poses[:, :, 3] - centre
    radii = offsets.norm(dim=-1)
    assert radii.min() >= 3.5 - 1e-4 and radii.max() <= 4.5 + 1e-4
    assert radii.max() - radii.min() > 0.5  # the whole shell is used, not one radius
    # -z (the viewing direction) points at the centre
    cos = torch.nn.functional.cosine_similarity(-poses[:, :, 2], -offsets, dim=-1)
    assert cos.min() > 1 - 1e-5
    # up stays on the training cameras' side: no upside-down cameras, polar angles within the training range
    assert (poses[:, 2, 1] > 0).all()
    polar = torch.rad2deg(torch.acos(offsets[:, 2] / radii))
    assert polar.min() >= 30 - 1e-3 and polar.max() <= 70 + 1e-3
    azimuth = torch.atan2(offsets[:, 1], offsets[:, 0])
    assert azimuth.min() < -2.5 and azimuth.max() > 2.5  # all the way round


def test_forward_facing_poses_stay_near_the_training_poses():
    train = _forward_facing_poses()
    poses = sample_novel_poses(train, 200, torch.Generator().manual_seed(0), "auto")
    assert poses.shape == (200, 3, 4) and _is_rotation(poses)
    low, high = train[:, :, 3].min(0).values, train[:, :, 3].max(0).values
    margin = 0.05 * (high - low) + 1e-6  # the box grows by 1.1: 5% each side
    assert (poses[:, :, 3] >= low - margin).all() and (poses[:, :, 3] <= high + margin).all()
    mean_forward = torch.nn.functional.normalize(-train[:, :, 2].mean(0), dim=0)
    angles = torch.rad2deg(torch.acos((-poses[:, :, 2] @ mean_forward).clamp(max=1.0)))
    train_angles = torch.rad2deg(torch.acos((-train[:, :, 2] @ mean_forward).clamp(max=1.0)))
    assert angles.max() < train_angles.max() * 1.5 + 1.0
    assert (poses[:, 1, 1] > 0.9).all()  # up stays up


@pytest.mark.parametrize("kind", ["sphere", "forward_facing"])
def test_poses_are_deterministic_from_the_seed(kind):
    train = _orbit_poses() if kind == "sphere" else _forward_facing_poses()
    first = sample_novel_poses(train, 5, torch.Generator().manual_seed(3), kind)
    again = sample_novel_poses(train, 5, torch.Generator().manual_seed(3), kind)
    other = sample_novel_poses(train, 5, torch.Generator().manual_seed(4), kind)
    assert torch.equal(first, again) and not torch.allclose(first, other)


def test_novel_cameras_copy_training_intrinsics_divided_by_downscale():
    train = _orbit_poses(6)
    cameras = Cameras(camera_to_worlds=train, fx=80.0, fy=82.0, cx=50.0, cy=40.0, width=100, height=80)
    novel = novel_cameras(cameras, 3, torch.Generator().manual_seed(0), "sphere", downscale=2.0)
    assert novel.shape == (3,)
    assert torch.allclose(novel.fx, torch.full((3, 1), 40.0)) and torch.allclose(novel.cy, torch.full((3, 1), 20.0))
    assert (novel.width == 50).all() and (novel.height == 40).all()
    rays = novel.generate_rays(camera_indices=0)
    assert rays.origins.shape == (40, 50, 3)


def test_bad_scene_kind_is_rejected():
    with pytest.raises(ValueError, match="scene_kind"):
        sample_novel_poses(_orbit_poses(), 2, torch.Generator(), "panorama")  # type: ignore[arg-type]
