"""Residual vector quantisation: each stage reduces the error; straight-through input gradient; code gradients."""

import itertools

import torch

from ng_methods.c3dgs.rvq import ResidualVectorQuantizer, kmeans


def _error_after_stages(vq: ResidualVectorQuantizer, x: torch.Tensor):
    indices = vq.encode(x)
    errors, approximation = [], torch.zeros_like(x)
    for stage in range(vq.num_stages):
        approximation = approximation + vq.codebooks.detach()[stage][indices[:, stage]]
        errors.append(float((approximation - x).pow(2).sum(-1).mean()))
    return errors


def test_every_stage_reduces_the_error():
    torch.manual_seed(0)
    scales = torch.exp(torch.randn(3000, 3) - 3)  # activated scales: positive, heavy-tailed
    vq = ResidualVectorQuantizer(3, num_stages=6, codebook_size=64)
    vq.initialize(scales, kmeans_iterations=1)
    errors = _error_after_stages(vq, scales)
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.1 * errors[0]
    quantized, indices = vq(scales)
    assert indices.shape == (3000, 6) and int(indices.max()) < 64
    torch.testing.assert_close(quantized, vq.decode(indices))


def test_straight_through_and_codebook_gradients():
    torch.manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(500, 4), dim=-1)
    vq = ResidualVectorQuantizer(4, num_stages=3, codebook_size=16)
    vq.initialize(x)
    x = x.clone().requires_grad_(True)
    quantized, indices = vq(x)
    weights = torch.randn_like(quantized)
    (quantized * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights)  # identity (straight-through)
    for stage in range(3):  # every code receives the summed gradient of the rows that chose it
        expected = torch.zeros(16, 4).index_add_(0, indices[:, stage], weights)
        torch.testing.assert_close(vq.codebooks.grad[stage], expected)


def test_kmeans_handles_fewer_points_than_clusters():
    points = torch.randn(5, 3)
    centres = kmeans(points, 64, iterations=2)
    assert centres.shape == (64, 3)
    assert torch.cdist(points, centres).min(dim=1).values.max() < 1e-6
