"""Culling continues after splitting stops (official ``continue_cull_post_densification``)."""

from __future__ import annotations

import torch

from ng_methods.splatfacto_wild.strategy import WildStrategy


def _gaussians():
    opacities = torch.logit(torch.tensor([[0.5], [0.05], [0.5], [0.9]]))
    scales = torch.log(torch.tensor([[0.1] * 3, [0.1] * 3, [0.9] * 3, [0.2] * 3]))
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.randn(4, 3)),
        "opacities": torch.nn.Parameter(opacities),
        "scales": torch.nn.Parameter(scales),
        "appearance_features": torch.nn.Parameter(torch.randn(4, 72)),
    })
    optimizers = {name: torch.optim.Adam([p], lr=1e-3) for name, p in params.items()}
    return params, optimizers


def test_cull_after_refine_stop_removes_transparent_and_huge_gaussians():
    strategy = WildStrategy(prune_opa=0.1, prune_scale3d=0.5, refine_stop_iter=100, refine_every=10)
    params, optimizers = _gaussians()
    kept_features = params["appearance_features"].detach()[[0, 3]].clone()
    state = strategy.initialize_state(scene_scale=1.0)
    strategy.step_post_backward(params, optimizers, state, step=105, info={})  # not a refinement step
    assert len(params["means"]) == 4
    strategy.step_post_backward(params, optimizers, state, step=110, info={})
    assert len(params["means"]) == 2
    torch.testing.assert_close(params["appearance_features"].detach(), kept_features)
    for name, optimizer in optimizers.items():
        assert optimizer.param_groups[0]["params"][0] is params[name]


def test_no_culling_after_refine_stop_when_disabled():
    strategy = WildStrategy(prune_opa=0.1, refine_stop_iter=100, refine_every=10, cull_after_refine_stop=False)
    params, optimizers = _gaussians()
    strategy.step_post_backward(params, optimizers, strategy.initialize_state(), step=110, info={})
    assert len(params["means"]) == 4
