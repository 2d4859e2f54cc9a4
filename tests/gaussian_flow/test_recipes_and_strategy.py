"""Released Gaussian-Flow recipes, the 3DGS-rule strategy, the camera extent and the 8-bit metrics."""

from __future__ import annotations

import torch
from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

from method_configs.gaussian_flow import GAUSSIAN_FLOW_PRESETS, gaussian_flow_config
from ng_methods.gaussian_flow.protocol import quantise_8bit, scale_lrs
from ng_methods.splat.extent import camera_extent
from ng_methods.gaussian_flow.recipes import RECIPES
from ng_methods.gaussian_flow.strategy import GaussianFlowStrategy
from tests.gaussian_flow.helpers import look_at_origin


def test_recipes_build_configs_with_their_released_values():
    assert set(GAUSSIAN_FLOW_PRESETS) == set(RECIPES)
    lego = gaussian_flow_config("lego").pipeline.model
    assert (lego.position_order, lego.rotation_order, lego.color_order, lego.sh_rest_order) == (2, 1, 2, 2)
    mutant = gaussian_flow_config("mutant")
    assert mutant.pipeline.model.sh_rest_order == 0 and mutant.pipeline.model.time_noise == 0.005
    assert mutant.optimizers["quats_traj"]["optimizer"].lr == 0.001
    default = gaussian_flow_config("default")
    assert default.max_num_iterations == 30000 and default.pipeline.datamanager.images_per_step == 1
    assert RECIPES["jumpingjacks"].opacity_reset_interval == 5000
    assert gaussian_flow_config("jumpingjacks").pipeline.model.reset_alpha_every == 50


def test_camera_extent_is_the_largest_distance_from_the_centroid():
    cameras = look_at_origin(distance=3.0)
    centres = cameras.camera_to_worlds[:, :3, 3]
    expected = (centres - centres.mean(0)).norm(dim=-1).max().item()
    assert abs(camera_extent(cameras.camera_to_worlds, factor=1.0) - expected) < 1e-6
    assert abs(camera_extent(cameras.camera_to_worlds) - 1.1 * expected) < 1e-6


def test_scale_lrs_scales_rate_and_schedule_once():
    param = torch.nn.Parameter(torch.zeros(3))
    config = {"means": {"optimizer": AdamOptimizerConfig(lr=1e-4),
                        "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-6, max_steps=100)}}
    optimizers = Optimizers(config, {"means": [param]})
    scale_lrs(optimizers, ["means", "absent"], 5.0)
    scale_lrs(optimizers, ["means"], 5.0)  # a resumed run: not twice
    assert abs(optimizers.optimizers["means"].param_groups[0]["lr"] - 5e-4) < 1e-12
    for _ in range(100):
        optimizers.optimizers["means"].step()
        optimizers.scheduler_step_all(0)
    assert abs(optimizers.optimizers["means"].param_groups[0]["lr"] - 5e-6) < 1e-9


def _params(n: int):
    return {
        "means": torch.nn.Parameter(torch.zeros(n, 3)), "scales": torch.nn.Parameter(torch.full((n, 3), -5.0)),
        "quats": torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)),
        "opacities": torch.nn.Parameter(torch.full((n, 1), 2.0)),
    }


def test_strategy_resets_to_its_value_at_extra_steps_and_prunes_big_by_pixels():
    strategy = GaussianFlowStrategy(refine_start_iter=5, refine_every=10, reset_every=30, refine_stop_iter=100,
                                    reset_opacity=0.1, extra_reset_steps=(5,), prune_radius_px=20.0, prune_opa=1e-3)
    params = _params(4)
    optimizers = {k: torch.optim.Adam([v], lr=1e-3) for k, v in params.items()}
    state = strategy.initialize_state(scene_scale=1.0)
    radii = torch.tensor([[1.0, 1.0, 30.0, 0.0]])

    def info(gradient: float):
        means2d = torch.zeros(1, len(params["means"]), 2, requires_grad=True)
        (means2d[..., 0] * gradient).sum().backward()
        return {"means2d": means2d, "width": 10, "height": 10, "n_cameras": 1, "gaussian_ids": None, "radii": radii}

    strategy.step_post_backward(params, optimizers, state, 5, info(0.0))
    assert torch.allclose(torch.sigmoid(params["opacities"]), torch.tensor(0.1))  # min(opacity, 0.1) at step 5
    strategy.step_post_backward(params, optimizers, state, 40, info(0.0))  # after the first reset, nothing grew:
    assert params["means"].shape[0] == 3  # the 30 px one is pruned
    radii = torch.tensor([[1.0, 1.0, 30.0]])
    strategy.step_post_backward(params, optimizers, state, 50, info(1.0))  # clones zero the radii, as released
    assert params["means"].shape[0] == 6


def test_quantise_8bit_rounds_like_save_image():
    values = torch.tensor([0.0, 0.5 / 255, 0.49 / 255, 1.0, 1.2])
    torch.testing.assert_close(quantise_8bit(values), torch.tensor([0.0, 1 / 255, 0.0, 1.0, 1.0]))
