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


def _growth_params(max_scales, grads, radii):
    n = len(max_scales)
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.zeros(n, 3)),
        "opacities": torch.nn.Parameter(torch.zeros(n, 1)),
        "scales": torch.nn.Parameter(torch.log(torch.tensor(max_scales))[:, None].repeat(1, 3)),
        "quats": torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)),
    })
    state = {"grad2d": torch.tensor(grads), "count": torch.ones(n), "radii": torch.tensor(radii), "scene_scale": 1.0}
    return params, state


def test_official_split_rule_needs_a_high_gradient_for_big_splats():
    # 0: large, high grad | 1: small, big on screen, low grad | 2: small, big on screen, high grad | 3: small, high grad
    params, state = _growth_params([0.5, 0.001, 0.001, 0.001], [1.0, 0.0, 1.0, 1.0], [0.0, 0.2, 0.2, 0.0])
    kwargs = dict(grow_grad2d=0.5, grow_scale3d=0.01, grow_scale2d=0.05, refine_scale2d_stop_iter=100)
    dupli, split = WildStrategy(split_rule="official", **kwargs).split_and_duplicate_masks(params, state, step=10)
    assert split.tolist() == [True, False, True, False] and dupli.tolist() == [False, False, True, True]
    dupli, split = WildStrategy(split_rule="gsplat", **kwargs).split_and_duplicate_masks(params, state, step=10)
    assert split.tolist() == [True, True, True, False] and dupli.tolist() == [False, False, True, True]
    # after refine_scale2d_stop_iter the screen size no longer matters under either rule
    _, split = WildStrategy(split_rule="official", **kwargs).split_and_duplicate_masks(params, state, step=100)
    assert split.tolist() == [True, False, False, False]


def _resets_and_growths(strategy, steps, monkeypatch):
    import ng_methods.splatfacto_wild.strategy as module

    resets, grown, cleared = [], [], []
    monkeypatch.setattr(module, "reset_opa", lambda **kwargs: resets.append(current[0]))
    monkeypatch.setattr(strategy, "_update_state", lambda *args, **kwargs: None)
    monkeypatch.setattr(strategy, "_grow_gs", lambda *args: grown.append(current[0]))
    monkeypatch.setattr(strategy, "_prune_gs", lambda *args: None)
    monkeypatch.setattr(strategy, "_clear_stats", lambda state: cleared.append(current[0]))
    current = [0]
    for step in steps:
        current[0] = step
        strategy.step_post_backward({}, {}, {}, step, info={})
    return resets, grown, cleared


def test_official_reset_timing_pause_and_statistics(monkeypatch):
    """Resets at step % 2500 == 100 after warmup; growth only when step % 2500 > #images + 100 (official)."""
    n_images = 150
    strategy = WildStrategy(refine_start_iter=1000, refine_stop_iter=20000, reset_every=2500, refine_every=100,
                            pause_refine_after_reset=n_images + 100 + 1, reset_offset=100,
                            reset_stats_every_refine=True, cull_after_refine_stop=False)
    resets, grown, cleared = _resets_and_growths(strategy, range(0, 20001, 100), monkeypatch)
    assert resets == [2600 + 2500 * k for k in range(7)]  # none at 100 (warmup) nor at 20100 (after splitting)
    assert 2500 not in grown and 2600 not in grown and 2700 not in grown and 2800 in grown  # 2700 % 2500 == 200
    assert 1100 in grown and 1000 not in grown
    assert set(range(1100, 20000, 100)) == set(cleared)  # cleared at every refinement step, also while paused


def test_gsplat_timing_is_kept_by_default(monkeypatch):
    strategy = WildStrategy(refine_start_iter=1000, refine_stop_iter=20000, reset_every=2500, refine_every=100,
                            pause_refine_after_reset=250, cull_after_refine_stop=False)
    resets, grown, cleared = _resets_and_growths(strategy, range(0, 20001, 100), monkeypatch)
    assert resets == [0] + [2500 * k for k in range(1, 8)]
    assert 2800 in grown and 2700 not in grown and set(cleared) == set(grown)  # cleared only after growth


def test_official_gradient_statistic_uses_the_longest_side_and_one_extra_view():
    means2d = torch.zeros(1, 2, 2)
    means2d.absgrad = torch.tensor([[[0.3, 0.4], [1.0, 0.0]]])  # pixel-space gradients of two Gaussians
    info = {"width": 100, "height": 200, "n_cameras": 1, "radii": torch.tensor([[5.0, 0.0]]), "gaussian_ids": None,
            "means2d": means2d}
    params = {"means": torch.zeros(2, 3), "scales": torch.zeros(2, 3)}
    official = WildStrategy(absgrad=True, grad_normalization="official", refine_scale2d_stop_iter=10)
    state = official.initialize_state()
    official._update_state(params, state, info)
    torch.testing.assert_close(state["grad2d"], torch.tensor([0.5 * 100.0, 0.0]))  # |(0.3, 0.4)| x 200 / 2
    torch.testing.assert_close(state["radii"], torch.tensor([5.0 / 200, 0.0]))
    official.grow_grad2d = 24.0  # averaged over (1 view + 1): 25 > 24, and 0 for the unseen one
    assert official.split_and_duplicate_masks(params, state, step=20)[1].tolist() == [True, False]  # split
    gsplat = WildStrategy(absgrad=True)
    state = gsplat.initialize_state()
    gsplat._update_state(params, state, info)
    expected = torch.tensor([0.3 * 50, 0.4 * 100]).norm()  # x by W / 2, y by H / 2
    torch.testing.assert_close(state["grad2d"], torch.stack([expected, torch.tensor(0.0)]))
