"""Colour MLP -> SH, embedding interpolation, the half-image camera crop, the embedding fit."""

from __future__ import annotations

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from ng_methods.splatfacto_wild.appearance import AppearanceColorModel, blend_embeddings
from ng_methods.splatfacto_wild.eval_protocol import column_crop_camera, fit_appearance_embedding, left_columns


def test_colour_model_outputs_view_independent_sh_at_start():
    model = AppearanceColorModel(embed_dim=48, feature_dim=72)
    sh = model(torch.randn(48), torch.zeros(10, 72))
    assert sh.shape == (10, 16, 3)
    assert (sh[:, 1:] == 0).all()  # rest head is zero-initialised
    assert not torch.allclose(model(torch.randn(48), torch.zeros(1, 72)), sh[:1])  # embedding changes colour


def test_blend_embeddings_interpolates_and_uses_the_mean_for_negative_indices():
    weights = torch.tensor([[0.0, 0.0], [2.0, 4.0], [4.0, 2.0]])
    torch.testing.assert_close(blend_embeddings(weights, 1, None, 0.7), weights[1])
    torch.testing.assert_close(blend_embeddings(weights, 1, 2, 0.25), torch.tensor([2.5, 3.5]))
    torch.testing.assert_close(blend_embeddings(weights, 1, 2, 1.0), weights[2])
    torch.testing.assert_close(blend_embeddings(weights, -1, None, 0.0), torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(blend_embeddings(weights, 0, -1, 0.5), torch.tensor([1.0, 1.0]))
    with pytest.raises(IndexError):
        blend_embeddings(weights, 3, None, 0.0)


def test_column_crop_camera_sees_the_same_pixels():
    camera = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=30.0, fy=30.0, cx=10.5, cy=8.0, width=21, height=16)
    left = left_columns(21)
    full = camera.generate_rays(camera_indices=0, keep_shape=True).directions
    left_half = column_crop_camera(camera, 0, left).generate_rays(camera_indices=0, keep_shape=True).directions
    right_half = column_crop_camera(camera, left, 21).generate_rays(camera_indices=0, keep_shape=True).directions
    torch.testing.assert_close(left_half, full[:, :left])
    torch.testing.assert_close(right_half, full[:, left:])


def test_fit_appearance_embedding_recovers_a_colour_under_no_grad():
    torch.manual_seed(0)
    target_embedding = torch.tensor([0.2, 0.7, 0.4])

    def render(embedding):
        return embedding.clamp(0, 1)[None, None, :].expand(16, 16, 3)

    with torch.no_grad():  # ns-eval evaluates under no_grad
        fitted, losses = fit_appearance_embedding(
            render, render(target_embedding), torch.full((3,), 0.5), steps=200, lr=0.01, ssim_lambda=0.0
        )
    assert losses[-1] < 0.1 * losses[0]
    torch.testing.assert_close(fitted, target_embedding, atol=0.02, rtol=0)
