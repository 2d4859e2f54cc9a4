"""GaussianFlowModel: zero-initialised trajectories are static, trained ones move, gradients reach them."""

from __future__ import annotations

import torch

from ng_methods.gaussian_flow.model import TRAJECTORIES
from tests.gaussian_flow.helpers import look_at_origin, tiny_model


def test_parameters_and_shapes():
    model = tiny_model(num_gaussians=30)
    params = model.gauss_params
    assert params["means_traj"].shape == (30, 3, 3, 3)
    assert params["quats_traj"].shape == (30, 2, 4, 3)
    assert params["features_dc_traj"].shape == (30, 2, 3, 3)
    assert params["time_offsets"].shape == (30, 1)
    for name in ("means_traj", "quats_traj", "features_dc_traj", "time_offsets"):
        assert torch.count_nonzero(params[name]) == 0
    assert set(model.get_gaussian_param_groups()) == set(params.keys())
    assert "features_rest_traj" not in params  # sh_rest_order = 0: static AC bands
    torch.testing.assert_close(params["quats"], torch.tensor([[1.0, 0, 0, 0]]).expand(30, 4))  # released init


def test_zero_init_renders_the_same_at_every_time():
    model = tiny_model()
    cameras = look_at_origin(times=(0.0, 1.0))
    camera_early, camera_late = cameras[0:1], cameras[1:2]
    camera_late.camera_to_worlds = camera_early.camera_to_worlds  # same pose, different time
    with torch.no_grad():
        early = model.get_outputs(camera_early)["rgb"]
        late = model.get_outputs(camera_late)["rgb"]
        torch.testing.assert_close(early, late)
        model.gauss_params["means_traj"][:, 1, 0, 0] = 1.0  # x moves with t
        moved = model.get_outputs(camera_late)["rgb"]
    assert (moved - early).abs().max() > 0.05


def test_deformation_changes_position_rotation_and_colour_dc_only():
    model = tiny_model()
    with torch.no_grad():
        for traj_name, _ in TRAJECTORIES:
            if traj_name in model.gauss_params:
                model.gauss_params[traj_name].normal_()
    static = {name: p.detach().clone() for name, p in model.gauss_params.items()}
    deformed = model.deformed_attributes(torch.tensor(0.7))
    for name in ("means", "quats", "features_dc"):
        assert not torch.allclose(deformed[name], static[name])
    for name in ("scales", "opacities", "features_rest"):
        assert torch.equal(deformed[name], static[name])


def test_gradients_reach_trajectories_and_time_offsets():
    model = tiny_model()
    model.train()
    model.optimizers = {}  # the trainer's step callback sets these; the strategy's pre-backward hook needs none
    with torch.no_grad():
        model.gauss_params["means_traj"].normal_(std=0.1)  # so d/d tau is non-zero
        model.gauss_params["scales"][:, 0] = -1.0  # anisotropic, so rotations matter (the init is identity)
        model.gauss_params["quats"].normal_()
    camera = look_at_origin(times=(0.4,))
    output = model.get_outputs(camera)
    output["rgb"].square().sum().backward()
    for name in ("means_traj", "quats_traj", "features_dc_traj", "time_offsets", "means"):
        grad = model.gauss_params[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_regularisers_are_off_by_default_and_weighted_when_on():
    model = tiny_model(temporal_smoothness_weight=1.0, rigidity_weight=1.0, rigidity_neighbours=4,
                       rigidity_theta=1.0)  # the released 1e5 assumes dense scenes; these points are far apart
    model.train()
    with torch.no_grad():
        model.gauss_params["means_traj"].normal_(std=0.1)
        model.gauss_params["quats_traj"].normal_(std=0.1)
    losses = model._regularisers(torch.tensor(0.3))
    assert set(losses) == {"temporal_smoothness", "rigidity"}
    assert all(value > 0 for value in losses.values())
    sum(losses.values()).backward()
    assert model.gauss_params["means_traj"].grad.abs().sum() > 0
    assert tiny_model()._regularisers(torch.tensor(0.3)) == {}


def test_sh_rest_trajectory_deforms_the_ac_bands():
    model = tiny_model(sh_rest_order=2)
    assert model.gauss_params["features_rest_traj"].shape == (40, 2, 9, 3)  # SH degree 1: 3 AC bands x RGB
    with torch.no_grad():
        model.gauss_params["features_rest_traj"].normal_()
    deformed = model.deformed_attributes(torch.tensor(0.4))
    assert deformed["features_rest"].shape == model.gauss_params["features_rest"].shape
    assert not torch.allclose(deformed["features_rest"], model.gauss_params["features_rest"])


def test_a_batch_of_cameras_renders_each_at_its_time_and_feeds_the_strategy():
    model = tiny_model()
    model.train()
    model.optimizers = {}
    with torch.no_grad():
        model.gauss_params["means_traj"][:, 1, 0, 0] = 1.0
    cameras = look_at_origin(times=(0.1, 0.9))
    outputs = model.get_outputs(cameras)
    assert outputs["rgb"].shape == (2, 24, 24, 3) and len(model.info["views"]) == 2
    batch = {"image": torch.rand(2, 24, 24, 3)}
    loss = model.get_loss_dict(outputs, batch)["main_loss"]
    singles = [model.get_loss_dict(model.get_outputs(cameras[i:i + 1]), {"image": batch["image"][i]})["main_loss"]
               for i in range(2)]
    torch.testing.assert_close(loss, sum(singles) / 2)
    outputs = model.get_outputs(cameras)
    model.get_loss_dict(outputs, batch)["main_loss"].backward()
    state = model.strategy.initialize_state()
    model.strategy._update_state(model.gauss_params, state, model.info)
    assert state["count"].max() == 1 and state["grad2d"].sum() > 0  # one observation per step, not per view
