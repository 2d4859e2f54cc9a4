"""The Light4GS-style tools are generic over splat models: significance pruning and the compact file on 4d-rotor-gs."""

from __future__ import annotations

import torch
from nerfstudio.data.scene_box import SceneBox

from ng_methods.compression.dynamic_codec import load_compact, save_compact, uncompressed_bytes
from ng_methods.compression.significance import least_significant, prune_gaussians, significance_scores
from ng_methods.rotor4d.model import Rotor4DGSModelConfig
from tests.gaussian_flow.helpers import look_at_origin


def _tiny_rotor_model(num: int, seed: int):
    torch.manual_seed(seed)
    config = Rotor4DGSModelConfig(num_random=num, random_scale=1.0, rasterizer_backend="torch", sh_degree=1,
                                  consistency_weight=0.0)
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=4,
                         metadata={})
    with torch.no_grad():  # visible, slowly varying Gaussians in a 24x24 view
        model.gauss_params["scales"].fill_(-2.0)
        model.gauss_params["opacities"].fill_(0.5)
        model.gauss_params["features_dc"].normal_(std=0.5)
    model.eval()
    return model


def test_prune_then_round_trip_on_4d_rotor_gaussians(tmp_path):
    model = _tiny_rotor_model(80, seed=1)
    cameras = look_at_origin(times=(0.0, 0.5, 1.0))
    with torch.no_grad():
        scores = significance_scores(model, cameras)
    assert scores.shape == (80,) and torch.all(scores >= 0) and scores.max() > 0
    prune_gaussians(model, {}, least_significant(scores, 0.4))
    assert model.gauss_params["means"].shape[0] == 48

    with torch.no_grad():
        before = [model.get_outputs(cameras[i : i + 1])["rgb"] for i in range(3)]
    size = save_compact(model, tmp_path / "rotor.ngd")
    assert size < uncompressed_bytes(model)
    restored = _tiny_rotor_model(10, seed=5)
    meta = load_compact(restored, tmp_path / "rotor.ngd")
    assert meta["num_gaussians"] == 48
    with torch.no_grad():
        after = [restored.get_outputs(cameras[i : i + 1])["rgb"] for i in range(3)]
    for a, b in zip(before, after):
        assert (a - b).abs().max() < 4e-3
    assert not torch.allclose(before[0], before[2])  # the views differ (different cameras and times)
