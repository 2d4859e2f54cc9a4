"""Light4GS significance (ones-colour gradient) against brute-force compositing, and pruning consistency."""

from __future__ import annotations

import torch
from nerfstudio.models.splatfacto import get_viewmat

from ng_methods.compression.significance import (
    least_significant, prune_gaussians, prune_steps, significance_scores, view_significance,
)
from ng_methods.kernels.splat import rasterize
from tests.gaussian_flow.helpers import look_at_origin, tiny_model


def brute_force_alpha_transmittance(model, camera) -> torch.Tensor:
    """``sum_p alpha_i T_i`` by rendering one-hot colours: channel ``i`` of the image is Gaussian ``i``'s share."""
    with torch.no_grad():
        gaussians = model.gaussians_for_camera(camera, None)
        n = gaussians.means.shape[0]
        render, _, _ = rasterize(
            gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, torch.eye(n),
            get_viewmat(camera.camera_to_worlds), camera.get_intrinsics_matrices(),
            int(camera.width.item()), int(camera.height.item()), backend="torch",
        )
    return render.sum(dim=(0, 1, 2))


def test_view_significance_equals_brute_force_sum_of_alpha_times_transmittance():
    model = tiny_model(num_gaussians=25)
    with torch.no_grad():
        model.gauss_params["means_traj"].normal_(std=0.3)  # a moving scene: each view scores its own time
    cameras = look_at_origin()
    total = torch.zeros(25)
    for index in range(cameras.shape[0]):
        camera = cameras[index : index + 1]
        expected = brute_force_alpha_transmittance(model, camera)
        assert expected.sum() > 1.0  # the scene is visible
        score = view_significance(model, camera)
        torch.testing.assert_close(score, expected, rtol=1e-4, atol=1e-5)
        total += expected
    torch.testing.assert_close(significance_scores(model, cameras), total, rtol=1e-4, atol=1e-4)


def test_scores_depend_on_the_view_time():
    model = tiny_model(num_gaussians=25)
    with torch.no_grad():
        model.gauss_params["means_traj"].normal_(std=0.5)
    early, late = look_at_origin(times=(0.0,)), look_at_origin(times=(1.0,))  # same pose, different time
    torch.testing.assert_close(early.camera_to_worlds, late.camera_to_worlds)
    assert not torch.allclose(view_significance(model, early), view_significance(model, late))


def test_least_significant_takes_exactly_the_fraction():
    scores = torch.tensor([5.0, 1.0, 1.0, 0.0, 3.0, 2.0, 7.0, 4.0, 6.0, 8.0])
    mask = least_significant(scores, 0.4)
    assert mask.sum() == 4 and set(torch.where(mask)[0].tolist()) == {1, 2, 3, 5}
    assert prune_steps((0.75, 0.9), 20000) == [15000, 18000]
    assert prune_steps((0.75, 0.9), 40) == [30, 36]


def test_pruning_keeps_parameters_optimizers_and_strategy_state_consistent():
    model = tiny_model(num_gaussians=50)
    model.train()
    optimizers = {name: torch.optim.Adam([param], lr=1e-3) for name, param in model.gauss_params.items()}
    model.optimizers = optimizers
    output = model.get_outputs(look_at_origin(times=(0.2,)))
    output["rgb"].sum().backward()
    for optimizer in optimizers.values():
        optimizer.step()
    model.strategy_state["grad2d"] = torch.arange(50.0)
    moments_before = optimizers["means_traj"].state[model.gauss_params["means_traj"]]["exp_avg"].clone()

    scores = significance_scores(model, look_at_origin())
    mask = least_significant(scores, 0.4)
    assert prune_gaussians(model, optimizers, mask) == 20
    keep = ~mask
    for name, param in model.gauss_params.items():
        assert param.shape[0] == 30, name
        group_param = optimizers[name].param_groups[0]["params"][0]
        assert group_param is param
        assert optimizers[name].state[param]["exp_avg"].shape == param.shape
    torch.testing.assert_close(
        optimizers["means_traj"].state[model.gauss_params["means_traj"]]["exp_avg"], moments_before[keep]
    )
    torch.testing.assert_close(model.strategy_state["grad2d"], torch.arange(50.0)[keep])
    # the pruned model still trains
    model.get_outputs(look_at_origin(times=(0.5,)))["rgb"].sum().backward()
    for optimizer in optimizers.values():
        optimizer.step()


def test_released_logit_opacity_scores_gaussians_below_one_half_zero():
    """Light4GS's ``count_render`` rasterises the pre-activation opacity: below 0.5 (logit < 0) nothing is counted."""
    model = tiny_model(num_gaussians=25)
    with torch.no_grad():
        model.gauss_params["opacities"].copy_(torch.linspace(-3.0, 3.0, 25)[:, None])  # logits
    camera = look_at_origin(times=(0.2,))
    logit_scores = view_significance(model, camera, opacity_input="logit")
    activated_scores = view_significance(model, camera, opacity_input="activated")
    below_half = model.gauss_params["opacities"][:, 0] < 0
    assert (logit_scores[below_half] == 0).all() and (activated_scores[below_half] > 0).any()
    assert (logit_scores[~below_half] > 0).any()
    with torch.no_grad():  # the same as rasterising the logits directly (one-hot colours)
        gaussians = model.gaussians_for_camera(camera, None)
        render, _, _ = rasterize(
            gaussians.means, gaussians.quats, gaussians.scales, model.gauss_params["opacities"][:, 0], torch.eye(25),
            get_viewmat(camera.camera_to_worlds), camera.get_intrinsics_matrices(),
            int(camera.width.item()), int(camera.height.item()), backend="torch",
        )
    torch.testing.assert_close(logit_scores, render.sum(dim=(0, 1, 2)), rtol=1e-4, atol=1e-5)
