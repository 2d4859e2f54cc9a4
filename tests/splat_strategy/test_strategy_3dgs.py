"""The original 3DGS densification rule (``ThreeDGSStrategy``) on small synthetic inputs: plain gradient >= 2e-4
grows (duplicate small, split large), opacity < 0.005 and, after step 3000, world size > 0.1 x extent prune, no
screen-size split or prune, no pause after an opacity reset; plus the camera extent and the lr scaling helper."""

from __future__ import annotations

import math

import pytest
import torch

from ng_methods.splat.extent import camera_extent, scale_learning_rate
from ng_methods.splat.strategy_3dgs import ThreeDGSStrategy

EXTENT = 2.0
WIDTH = HEIGHT = 100


def _gaussians(scales, opacities):
    """Parameters and one Adam per parameter (gsplat's layout) for Gaussians at distinct centres."""
    n = len(scales)
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.arange(3 * n, dtype=torch.float32).reshape(n, 3)),
        "scales": torch.nn.Parameter(torch.log(torch.tensor(scales, dtype=torch.float32))[:, None].repeat(1, 3)),
        "quats": torch.nn.Parameter(torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)),
        "opacities": torch.nn.Parameter(torch.logit(torch.tensor(opacities, dtype=torch.float32))),
    })
    optimizers = {name: torch.optim.Adam([p], lr=1e-3) for name, p in params.items()}
    return params, optimizers


def _info(grad_ndc, radii_px):
    """A rasteriser meta dict whose means2d gradient (pixels) is ``grad_ndc`` in NDC units along x."""
    n = len(grad_ndc)
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    means2d.grad = torch.zeros(1, n, 2)
    means2d.grad[0, :, 0] = torch.tensor(grad_ndc) / (WIDTH / 2.0)
    means2d.absgrad = means2d.grad.abs() * 100  # would trigger everything if it were used
    return {"width": WIDTH, "height": HEIGHT, "n_cameras": 1, "gaussian_ids": None,
            "radii": torch.tensor([radii_px], dtype=torch.int32), "means2d": means2d}


def _refine_at(step, scales, opacities, grads, radii):
    strategy = ThreeDGSStrategy()
    params, optimizers = _gaussians(scales, opacities)
    state = strategy.initialize_state(scene_scale=EXTENT)
    strategy.step_post_backward(params, optimizers, state, step, _info(grads, radii))
    return params


def test_defaults_are_the_3dgs_values():
    s = ThreeDGSStrategy()
    assert (s.grow_grad2d, s.absgrad, s.prune_opa, s.grow_scale3d, s.prune_scale3d) == (2e-4, False, 0.005, 0.01, 0.1)
    assert (s.refine_start_iter, s.refine_stop_iter, s.refine_every, s.reset_every) == (500, 15000, 100, 3000)
    assert s.pause_refine_after_reset == 0 and s.refine_scale2d_stop_iter == 0


def test_plain_gradient_grows_small_by_duplication_and_large_by_split():
    small, large = 0.5 * 0.01 * EXTENT, 2 * 0.01 * EXTENT
    params = _refine_at(600, [small, large, small], [0.5, 0.5, 0.5], [3e-4, 3e-4, 1e-4], [5, 5, 5])
    # the quiet one stays, the small one is duplicated, the large one becomes two children with scale / 1.6
    assert params["means"].shape[0] == 1 + 2 + 2
    sizes = sorted(torch.exp(params["scales"][:, 0]).tolist())
    assert sizes[:3] == pytest.approx([small] * 3)
    assert sizes[3:] == pytest.approx([large / 1.6] * 2)


def test_opacity_and_world_size_pruning_and_no_screen_size_rule():
    big = 0.2 * EXTENT  # > 0.1 x extent
    before = _refine_at(2900, [big, 0.001, 0.001], [0.5, 0.004, 0.5], [0.0, 0.0, 0.0], [80, 5, 80])
    assert before["means"].shape[0] == 2  # only the transparent one goes before the first reset
    after = _refine_at(3100, [big, 0.001, 0.001], [0.5, 0.004, 0.5], [0.0, 0.0, 0.0], [80, 5, 80])
    assert after["means"].shape[0] == 1  # then also the big one; 80 px on a 100 px image is never pruned
    assert float(torch.exp(after["scales"].detach()[0, 0])) == pytest.approx(0.001)


def test_refines_right_after_a_reset_and_resets_to_001():
    # step 3000: reset; step 3100: refinement happens (Splatfacto would pause for a pass over the images)
    params = _refine_at(3000, [0.001], [0.5], [0.0], [5])
    assert torch.sigmoid(params["opacities"]).item() == pytest.approx(0.01)
    params = _refine_at(3100, [0.001], [0.5], [3e-4], [5])
    assert params["means"].shape[0] == 2
    assert _refine_at(500, [0.001], [0.5], [3e-4], [5])["means"].shape[0] == 1  # starts after 500
    assert _refine_at(15000, [0.001], [0.5], [3e-4], [5])["means"].shape[0] == 1  # stops at 15000


def test_camera_extent_is_the_nerfpp_radius():
    c2w = torch.eye(4)[:3].repeat(4, 1, 1)
    c2w[:, :3, 3] = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 3.0, 0], [0, -3.0, 0]])
    assert camera_extent(c2w) == pytest.approx(3.3)
    assert camera_extent(torch.eye(4)[:3][None]) == 1.0  # one camera: no extent, use 1


def test_scale_learning_rate_scales_the_schedule():
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: math.exp(-step))
    scale_learning_rate(optimizer, scheduler, 4.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4.0)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4.0 * math.exp(-1))
