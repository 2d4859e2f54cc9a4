"""Regularisers (entropy, 4D kNN consistency) and the 4D split sampling."""

from __future__ import annotations

import math

import torch

from ng_methods.rotor4d.losses import opacity_entropy_loss, velocity_consistency_loss
from ng_methods.rotor4d.rotor import normalize_rotor, rotor_to_rotation
from ng_methods.rotor4d.strategy import Rotor4DStrategy
from ng_methods.splat.knn import nearest_neighbours


def test_entropy_loss_values():
    opacities = torch.tensor([0.5, 0.5, 0.25, 0.0])
    visible = torch.tensor([True, True, False, False])
    invisible = (-0.25 * math.log(0.25) - 1e-3 * math.log(1e-3)) / 2
    expected = -0.5 * math.log(0.5) + 0.01 * invisible
    assert math.isclose(float(opacity_entropy_loss(opacities, visible)), expected, rel_tol=1e-5)
    assert float(opacity_entropy_loss(opacities, torch.zeros(4, dtype=torch.bool))) > 0


def test_knn_matches_brute_force():
    points = torch.randn(300, 4)
    dist2, idx = nearest_neighbours(points, 5, max_pairs_per_chunk=1000)  # forces several chunks
    brute = torch.cdist(points, points).square().topk(5, largest=False)
    torch.testing.assert_close(dist2, brute.values, atol=1e-5, rtol=1e-5)
    assert (idx[:, 0] == torch.arange(300)).all()  # the nearest point is the point itself


def test_consistency_loss_zero_for_rigid_motion_and_positive_otherwise():
    means, times = torch.randn(100, 3), torch.rand(100)
    same = torch.tensor([0.3, -0.1, 0.2]).expand(100, 3)
    assert float(velocity_consistency_loss(means, times, same)) < 1e-6
    noisy = same + torch.randn(100, 3)
    noisy.requires_grad_(True)
    loss = velocity_consistency_loss(means, times, noisy)
    assert float(loss.detach()) > 0.1
    loss.backward()
    assert noisy.grad is not None and noisy.grad.abs().sum() > 0


def test_split_children_are_samples_of_the_4d_gaussian():
    torch.manual_seed(0)
    rotor = normalize_rotor(torch.randn(1, 8))
    scales = torch.tensor([[0.2, 0.1, 0.05, 0.3]])
    params = {
        "means": torch.zeros(1, 3), "times": torch.full((1, 1), 0.5),
        "scales": torch.log(scales[:, :3]), "scales_t": torch.log(scales[:, 3:]), "rotors": rotor,
        "opacities": torch.zeros(1, 1), "features_dc": torch.zeros(1, 3),
    }
    strategy = Rotor4DStrategy(n_split_samples=20000)
    children = strategy._split_samples(params, torch.tensor([True]))
    xyzt = torch.cat([children["means"], children["times"]], dim=-1)
    rotation = rotor_to_rotation(rotor)[0]
    expected_cov = rotation @ torch.diag(scales[0] ** 2) @ rotation.T
    torch.testing.assert_close(xyzt.mean(0), torch.tensor([0.0, 0.0, 0.0, 0.5]), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(xyzt.T), expected_cov, atol=3e-3, rtol=0)
    torch.testing.assert_close(children["scales"][0], torch.log(scales[0, :3] / 1.6))
    torch.testing.assert_close(children["scales_t"][0], torch.log(scales[0, 3:] / 1.6))
    assert children["features_dc"].shape == (20000, 3)
