"""The volume mask: binary forward, sigmoid gradient backward, loss, and removal of masked Gaussians."""

import torch

from ng_methods.c3dgs.mask import kept_gaussians, mask_loss, straight_through_mask
from tests.c3dgs.helpers import small_model


def test_forward_is_binary_and_backward_is_the_sigmoid_gradient():
    logits = torch.tensor([-6.0, -4.0, 0.0, 1.0, 5.0], requires_grad=True)
    mask = straight_through_mask(logits, threshold=0.01)
    assert torch.equal(mask.detach(), torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0]))  # sigmoid(-4) = 0.018 > 0.01
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (mask * weights).sum().backward()
    sig = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, weights * sig * (1 - sig))


def test_mask_loss_is_weighted_mean_sigmoid():
    logits = torch.randn(100, 1)
    torch.testing.assert_close(mask_loss(logits, 5e-4), 5e-4 * torch.sigmoid(logits).mean())
    assert kept_gaussians(torch.tensor([-4.7, -4.5]), 0.01).tolist() == [False, True]


def test_masked_gaussians_render_nothing_and_are_removed():
    model = small_model(num_gaussians=50)
    with torch.no_grad():
        model.gauss_params["mask_logits"].data[:20] = -10.0
    _, scales, opacities = model.rendered_attributes()
    assert torch.all(opacities[:20] == 0) and torch.all(scales[:20] == 0) and torch.all(opacities[20:] > 0)

    # through gsplat's remove, with Adam moments that must follow the parameters
    optimizers = {name: torch.optim.Adam([p], lr=1e-3) for name, p in model.gauss_params.items()}
    for p in model.gauss_params.values():
        p.grad = torch.ones_like(p)
    for optimizer in optimizers.values():
        optimizer.step()
    model.optimizers = optimizers
    survivors = model.gauss_params["means"][20:].detach().clone()
    assert model.remove_masked_gaussians() == 20
    assert model.num_points == 30 and torch.equal(model.gauss_params["means"].detach(), survivors)
    for name, optimizer in optimizers.items():
        param = optimizer.param_groups[0]["params"][0]
        assert param is model.gauss_params[name]
        assert optimizer.state[param]["exp_avg"].shape == param.shape
    assert model.remove_masked_gaussians() == 0
