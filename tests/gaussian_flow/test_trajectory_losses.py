"""D3DGS's parameter-KNN and moving losses (released Gaussian-Flow scene recipes) against direct transcriptions."""

from __future__ import annotations

import pytest
import torch

from method_configs.gaussian_flow import gaussian_flow_config
from ng_methods.gaussian_flow.trajectory_losses import moving_loss, parameter_knn_loss, squared_norm_neighbours
from tests.gaussian_flow.helpers import tiny_model


def _all_pairs_neighbours(means: torch.Tensor, k: int):
    """D3DGS ``get_knn_index`` as written: the full ``| |x_i|^2 - |x_j|^2 |`` table, top-k smallest per row."""
    norms = means.double().pow(2).sum(-1)
    table = (norms[:, None] - norms[None, :]).abs()
    distances, indices = torch.topk(table, k, dim=-1, largest=False)
    return 1.0 - 0.5 * distances / distances.max(-1, keepdim=True).values, indices, distances


@pytest.mark.parametrize("n, k", [(1, 20), (7, 20), (20, 20), (500, 20), (64, 5)])
def test_windowed_neighbours_equal_the_all_pairs_search(n, k):
    means = torch.randn(n, 3, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    weights, indices = squared_norm_neighbours(means, k)
    kk = min(k, n)
    assert indices.shape == weights.shape == (n, kk)
    norms = means.pow(2).sum(-1)
    if n == 1:
        assert indices.tolist() == [[0]] and weights.tolist() == [[1.0]]
        return
    expected_weights, expected_indices, expected_distances = _all_pairs_neighbours(means, kk)
    distances = (norms[indices] - norms[:, None]).abs()
    torch.testing.assert_close(distances, expected_distances, rtol=0, atol=0)  # same neighbour distances
    torch.testing.assert_close(weights, expected_weights, rtol=1e-12, atol=0)
    assert (indices[:, 0] == torch.arange(n)).all()  # distinct norms: every point is its own nearest
    assert all(len(set(row)) == kk for row in indices.tolist())


def test_parameter_knn_loss_is_the_released_formula():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(30, 3, generator=generator)
    xyz = torch.randn(30, 2, 3, 3, generator=generator, requires_grad=True)
    rot = torch.randn(30, 1, 4, 3, generator=generator, requires_grad=True)
    weights, neighbours = squared_norm_neighbours(means, 6)
    loss = parameter_knn_loss([xyz, rot], neighbours, weights)
    expected = 0.0
    for i in range(30):
        for slot in range(6):
            j = int(neighbours[i, slot])
            term = (xyz[j] - xyz[i]).abs().mean() + (rot[j] - rot[i]).abs().mean()
            expected = expected + weights[i, slot] * term
    torch.testing.assert_close(loss, expected / (30 * 6))
    loss.backward()
    assert xyz.grad.abs().sum() > 0 and rot.grad.abs().sum() > 0


def test_moving_loss_is_the_mean_absolute_coefficient_per_tensor():
    xyz, rot = torch.full((4, 2, 3, 3), -0.5), torch.full((4, 1, 4, 3), 0.25)
    assert float(moving_loss([xyz, rot])) == pytest.approx(0.75)


def test_released_recipes_switch_the_losses_on():
    model = gaussian_flow_config("bouncingballs").pipeline.model
    assert (model.parameter_knn_weight, model.moving_loss_weight) == (0.1, 0.0)
    model = gaussian_flow_config("jumpingjacks").pipeline.model
    assert (model.parameter_knn_weight, model.moving_loss_weight) == (0.0, 1.0)
    model = gaussian_flow_config("lego").pipeline.model
    assert (model.parameter_knn_weight, model.moving_loss_weight) == (0.0, 0.0)


def test_model_adds_the_knn_loss_only_after_densification():
    model = tiny_model(parameter_knn_weight=0.1, moving_loss_weight=1.0, stop_split_at=10)
    model.train()
    with torch.no_grad():
        model.gauss_params["means_traj"].normal_(std=0.1)
    model.step = 10
    assert set(model._trajectory_regularisers()) == {"moving_loss"}
    model.step = 11
    losses = model._trajectory_regularisers()
    assert set(losses) == {"moving_loss", "parameter_knn"} and losses["parameter_knn"] > 0
    sum(losses.values()).backward()
    assert model.gauss_params["means_traj"].grad.abs().sum() > 0
    assert tiny_model()._trajectory_regularisers() == {}
