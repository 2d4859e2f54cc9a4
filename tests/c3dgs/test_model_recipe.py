"""The C3DGS model follows the official training recipe: 3DGS densification scaled by the camera extent (which also
multiplies the centres' learning rate, once), identity initial rotations, and codebooks that move only through
their in-place update in training renders."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ng_methods.splat.extent import camera_extent
from ng_methods.splat.strategy_3dgs import ThreeDGSStrategy
from tests.c3dgs.helpers import front_camera, small_model


def test_strategy_is_the_3dgs_rule_and_rotations_start_at_identity():
    model = small_model(num_gaussians=50)
    strategy = model.strategy
    assert isinstance(strategy, ThreeDGSStrategy)
    assert (strategy.grow_grad2d, strategy.absgrad, strategy.prune_scale3d) == (2e-4, False, 0.1)
    assert (strategy.pause_refine_after_reset, strategy.refine_scale2d_stop_iter, strategy.reset_every) == (0, 0, 3000)
    torch.testing.assert_close(model.gauss_params["quats"].detach(), torch.tensor([[1.0, 0, 0, 0]]).repeat(50, 1))


def _attributes(model, extent_cameras):
    means = model.gauss_params["means"]
    optimizer = torch.optim.Adam([means], lr=1.6e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    dataset = SimpleNamespace(cameras=SimpleNamespace(camera_to_worlds=extent_cameras))
    return SimpleNamespace(pipeline=SimpleNamespace(datamanager=SimpleNamespace(train_dataset=dataset)),
                           optimizers=SimpleNamespace(optimizers={"means": optimizer}, schedulers={"means": scheduler}))


def test_camera_extent_scales_densification_and_the_centres_lr_once():
    model = small_model(num_gaussians=20)
    c2w = torch.eye(4)[:3].repeat(2, 1, 1)
    c2w[:, 0, 3] = torch.tensor([4.0, -4.0])
    extent = camera_extent(c2w)
    assert extent == pytest.approx(4.4)
    attributes = _attributes(model, c2w)
    model.apply_scene_extent(attributes)
    assert model.strategy_state["scene_scale"] == pytest.approx(extent)
    optimizer, scheduler = attributes.optimizers.optimizers["means"], attributes.optimizers.schedulers["means"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.6e-4 * extent)
    assert scheduler.base_lrs[0] == pytest.approx(1.6e-4 * extent)
    # a resumed run: the checkpoint restores the scaled rates and the buffer, so nothing is scaled twice
    state = model.state_dict()
    resumed = small_model(num_gaussians=20)
    resumed.load_state_dict(state)
    resumed.apply_scene_extent(attributes)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.6e-4 * extent)


def test_codebooks_move_only_in_training_renders():
    model = small_model(num_gaussians=200)
    model.start_rvq()
    camera = front_camera(size=16)
    before = model.vq_scale.codebooks.clone()
    model.get_outputs_for_camera(camera)  # eval, no grad: no update
    torch.testing.assert_close(model.vq_scale.codebooks, before)
    model.train()
    model.rendered_attributes()  # a training render's attributes: one in-place Adam step per stage
    moved = (model.vq_scale.codebooks - before).abs().amax(dim=(1, 2))
    assert bool((moved > 0).all()) and float(moved.max()) <= 1.5e-4  # Adam's first step is at most ~lr
    assert not any(p is model.vq_scale.codebooks for group in model.get_param_groups().values() for p in group)
