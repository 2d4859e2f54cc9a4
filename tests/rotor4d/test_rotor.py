"""Rotor -> 4x4 matrix: identity, rotations for normalised rotors, agreement with quaternions in 3D."""

from __future__ import annotations

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _quat_to_rotmat

from ng_methods.rotor4d.rotor import (
    identity_rotors,
    normalize_rotor,
    rotor_pseudo_residual,
    rotor_to_quaternion,
    rotor_to_rotation,
)


def test_zero_bivector_is_identity():
    for scalar in (1.0, 2.5):
        rotors = identity_rotors(3) * scalar
        expected = torch.eye(4).expand(3, 4, 4) * scalar**2  # unnormalised: the matrix scales by |r|^2
        torch.testing.assert_close(rotor_to_rotation(rotors), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normalised_rotors_give_rotations(seed):
    generator = torch.Generator().manual_seed(seed)
    rotors = normalize_rotor(torch.randn(500, 8, generator=generator, dtype=torch.float64))
    assert rotor_pseudo_residual(rotors).abs().max() < 1e-10
    torch.testing.assert_close(rotors.norm(dim=-1), torch.ones(500, dtype=torch.float64), atol=1e-6, rtol=0)
    matrices = rotor_to_rotation(rotors)
    eye = torch.eye(4, dtype=torch.float64).expand_as(matrices)
    torch.testing.assert_close(matrices @ matrices.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(matrices), torch.ones(500, dtype=torch.float64), atol=1e-5, rtol=0)


def test_spatial_rotor_matches_its_quaternion():
    rotors = torch.randn(200, 8, dtype=torch.float64)
    rotors[:, 4:] = 0.0
    rotors = rotors / rotors.norm(dim=-1, keepdim=True)
    matrices = rotor_to_rotation(rotors)
    torch.testing.assert_close(matrices[:, :3, :3], _quat_to_rotmat(rotor_to_quaternion(rotors)))
    torch.testing.assert_close(matrices[:, 3, 3], torch.ones(200, dtype=torch.float64))
    torch.testing.assert_close(matrices[:, :3, 3], torch.zeros(200, 3, dtype=torch.float64))


def test_simple_rotation_in_a_space_time_plane():
    """A rotor ``cos(a/2) + sin(a/2) e_xw`` rotates the x-t plane by ``a`` and leaves y, z alone."""
    angle = 0.7
    rotor = torch.zeros(1, 8, dtype=torch.float64)
    rotor[0, 0], rotor[0, 4] = math.cos(angle / 2), math.sin(angle / 2)
    matrix = rotor_to_rotation(rotor)[0]
    assert matrix[0, 0] == pytest.approx(math.cos(angle)) and matrix[3, 3] == pytest.approx(math.cos(angle))
    assert abs(matrix[0, 3]) == pytest.approx(math.sin(angle))
    torch.testing.assert_close(matrix[1:3, 1:3], torch.eye(2, dtype=torch.float64))
