"""Residual vector quantisation: each stage reduces the error; 1x straight-through per stage; the official in-place
Adam codebook update."""

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


def test_input_gradient_is_straight_through_once_per_stage():
    torch.manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(500, 4), dim=-1)
    vq = ResidualVectorQuantizer(4, num_stages=3, codebook_size=16)
    vq.initialize(x)
    x = x.clone().requires_grad_(True)
    quantized, indices = vq(x, update=True)
    torch.testing.assert_close(quantized.detach(), vq.decode(indices))  # the value: codes after the update
    weights = torch.randn_like(quantized)
    (quantized * weights).sum().backward()
    torch.testing.assert_close(x.grad, 3 * weights)  # one straight-through per stage (official: 6x)
    assert not vq.codebooks.requires_grad  # codebooks only move through their in-place update


def test_in_place_update_is_one_adam_step_on_the_mse_per_stage():
    """Against torch's Adam on MSE(code[nearest], residual), stage by stage as ``VectorQuantize`` does it."""
    torch.manual_seed(2)
    x = torch.exp(torch.randn(400, 3) - 3)
    vq = ResidualVectorQuantizer(3, num_stages=2, codebook_size=8, codebook_lr=1e-2)
    vq.initialize(x)
    vq.codebooks += 0.02 * torch.randn_like(vq.codebooks)  # away from the k-means optimum (gradients ~0 there)
    references = [torch.nn.Parameter(vq.codebooks[stage].clone()) for stage in range(2)]
    adams = [torch.optim.Adam([code], lr=1e-2) for code in references]
    for _ in range(3):  # three training forwards: the moments carry over
        vq(x, update=True)
        residual = x.clone()
        for code, adam in zip(references, adams):
            index = torch.cdist(residual, code.detach()).argmin(dim=-1)
            torch.nn.functional.mse_loss(code[index], residual).backward()
            adam.step()
            adam.zero_grad()
            residual = residual - code.detach()[torch.cdist(residual, code.detach()).argmin(dim=-1)]
    for stage in range(2):
        torch.testing.assert_close(vq.codebooks[stage], references[stage].detach(), rtol=1e-5, atol=1e-7)
    before = vq.codebooks.clone()
    vq(x)  # outside training: no update
    torch.testing.assert_close(vq.codebooks, before)


def test_old_checkpoints_without_adam_state_load():
    vq = ResidualVectorQuantizer(3, num_stages=2, codebook_size=4)
    state = {"codebooks": torch.ones(2, 4, 3), "initialized": torch.tensor(True)}
    vq.load_state_dict(state)
    assert bool(vq.initialized) and float(vq.codebooks.sum()) == 24.0


def test_kmeans_handles_fewer_points_than_clusters():
    torch.manual_seed(3)
    points = torch.randn(5, 3)
    centres = kmeans(points, 64, iterations=2)
    assert centres.shape == (64, 3)
    exact_distances = (points[:, None, :] - centres[None, :, :]).norm(dim=-1)  # cdist's matmul path is ~1e-3 off
    assert exact_distances.min(dim=1).values.max() < 1e-6
