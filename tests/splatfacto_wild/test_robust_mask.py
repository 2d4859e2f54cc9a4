"""Robust transient mask (row rule, quantile, box-filter rule, loss-range state) and the alpha-loss selection."""

from __future__ import annotations

import torch

from ng_methods.splatfacto_wild.robust_mask import (
    RobustMaskState,
    alpha_loss,
    alpha_loss_pixels,
    box_filter,
    robust_mask,
)


def _mask_with_fraction(errors: torch.Tensor, fraction: float, **kwargs) -> torch.Tensor:
    """A mask whose masked fraction is exactly ``fraction`` (a degenerate range), whatever the loss."""
    state = RobustMaskState(max_loss=1.0, min_loss=0.0)
    return robust_mask(errors, state, step=1, mask_fraction_range=(fraction, fraction), **kwargs)


def test_box_filter_is_a_zero_padded_mean():
    image = torch.zeros(5, 5, 1)
    image[2, 2] = 9.0
    filtered = box_filter(image, 3)
    assert filtered[2, 2, 0] == 1.0 and filtered[1, 1, 0] == 1.0 and filtered[0, 0, 0] == 0.0


def test_a_coherent_blob_in_the_lower_rows_is_masked_and_isolated_outliers_are_kept():
    errors = torch.full((40, 40, 3), 0.01)
    errors[25:35, 10:20] = 0.9  # a transient: 100 pixels (6.25 %)
    errors[30, 35] = 0.9  # one isolated high-error pixel (fine texture)
    mask = _mask_with_fraction(errors, 0.1)
    assert mask.shape == (40, 40, 1)
    assert (mask[27:33, 12:18] == 0).all()  # inside the blob nothing has inlier neighbours
    assert mask[30, 35, 0] == 1  # its neighbourhood is all inliers (> 40 %), so it is kept
    assert mask[:25].all()


def test_the_upper_rows_are_never_masked_and_the_input_is_untouched():
    errors = torch.full((40, 40, 3), 0.01)
    errors[0:10, 0:10] = 0.9  # a blob in the top 40 % of rows (the sky)
    errors[30:36, 30:36] = 0.9
    before = errors.clone()
    mask = _mask_with_fraction(errors, 0.1, never_mask_upper=0.4)
    assert mask[:16].all()
    assert (mask[31:35, 31:35] == 0).all()
    torch.testing.assert_close(errors, before)


def test_masked_fraction_follows_the_running_loss_range():
    # errors grow smoothly down the image, so the outliers form whole rows (no box-filter rescue inside them)
    rows = torch.linspace(0.0, 1.0, 50)
    errors = rows[:, None, None].expand(50, 50, 3).contiguous()
    state = RobustMaskState()
    assert robust_mask(errors, state, step=1, never_mask_upper=0.0).all()  # first loss is min and max: fraction 0
    assert state.max_loss == state.min_loss == float(errors.mean())
    assert robust_mask(errors * 0.5, state, step=2, never_mask_upper=0.0).all()  # a new minimum: fraction 0
    highest = robust_mask(errors, state, step=3, never_mask_upper=0.0)  # the top of the range: 40 % masked
    assert 0.55 < float(highest.mean()) < 0.65  # 40 % of rows, minus the boundary row the box filter keeps
    assert highest[:29].all() and not highest[33:].any()
    halfway = robust_mask(errors * 0.75, state, step=4, never_mask_upper=0.0)  # mid-range: about 20 %
    assert 0.75 < float(halfway.mean()) < 0.85
    robust_mask(errors * 0.75, state, step=10, reset_interval=10, never_mask_upper=0.0)
    assert state.max_loss == float((errors * 0.75).mean())  # the running max resets every reset_interval steps


def test_alpha_loss_selects_only_smooth_regions_matching_the_background():
    background = torch.full((20, 20, 3), 0.5)
    gt = background.clone()
    gt[:, 10:] = 0.9  # the right half is foreground
    gt[5, 5] = 0.9  # one textured pixel inside the background region
    selected = alpha_loss_pixels(gt, background)
    assert selected[:, :8].sum() > 0 and not selected[:, 11:].any()
    assert selected[5, 5, 0]  # 8/9 neighbours match: the box filter keeps it selected (> 0.6)
    assert not selected[0, 0, 0]  # zero padding at the corner: 4/9 < 0.6
    alpha = torch.rand(20, 20, 1, requires_grad=True)
    loss = alpha_loss(alpha, gt, background, weight=0.15)
    torch.testing.assert_close(loss, 0.15 * alpha[selected].mean())
    loss.backward()
    assert alpha.grad[:, 11:].abs().sum() == 0
    assert alpha_loss(alpha, gt, torch.zeros_like(gt)) == 0  # nothing matches: no loss, no NaN


def test_upstream_in_place_row_zeroing_changes_the_loss_value_but_not_the_gradient():
    """Upstream zeroes the top rows of its L1 error map in place (under no_grad) before masking: the logged L1 drops
    those rows, but autograd still differentiates |gt - pred| there, so the gradients equal ours (a copy)."""
    torch.manual_seed(0)
    gt = torch.rand(20, 10, 3)
    pred_ours = torch.rand(20, 10, 3, requires_grad=True)
    pred_upstream = pred_ours.detach().clone().requires_grad_(True)
    state_ours, state_upstream = RobustMaskState(), RobustMaskState()

    errors = (gt - pred_ours).abs()
    l1_ours = (errors * robust_mask(errors, state_ours, step=1)).mean()
    l1_ours.backward()

    errors_up = (gt - pred_upstream).abs()
    with torch.no_grad():
        keep = robust_mask(errors_up, state_upstream, step=1)
        errors_up[: int(20 * 0.4)] = 0.0  # what upstream's robust_mask does to its argument
    l1_upstream = (errors_up * keep).mean()
    l1_upstream.backward()

    assert l1_upstream < l1_ours
    torch.testing.assert_close(pred_upstream.grad, pred_ours.grad)
