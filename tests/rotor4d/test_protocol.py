"""4d-rotor-gs follows the official D-NeRF protocol: 400 px, camera-based spatial extent."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.callbacks import TrainingCallbackAttributes

from method_configs.dynamic import rotor4d_gs
from ng_methods.rotor4d.model import Rotor4DGSModelConfig
from tests.gaussian_flow.helpers import look_at_origin


def _model(**overrides):
    config = Rotor4DGSModelConfig(num_random=50, rasterizer_backend="torch", **overrides)
    return config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.5] * 3, [1.5] * 3])), num_train_data=4,
                        metadata={})


def _attributes(cameras):
    pipeline = SimpleNamespace(datamanager=SimpleNamespace(train_dataset=SimpleNamespace(cameras=cameras)))
    return TrainingCallbackAttributes(optimizers=None, grad_scaler=None, pipeline=pipeline, trainer=None)


def test_spatial_extent_is_the_official_camera_extent_when_training_starts():
    cameras = look_at_origin(distance=4.0)
    centres = cameras.camera_to_worlds[:, :3, 3]
    expected = float((centres - centres.mean(0)).norm(dim=-1).max())
    model = _model()
    assert abs(model.strategy.spatial_extent - 3 ** 0.5 * 3 / 2) < 1e-5  # scene box until the cameras are known
    model.get_training_callbacks(_attributes(cameras))
    assert abs(model.strategy.spatial_extent - expected) < 1e-5
    fixed = _model(spatial_extent=2.0)
    fixed.get_training_callbacks(_attributes(cameras))
    assert fixed.strategy.spatial_extent == 2.0


def test_method_trains_and_evaluates_dnerf_at_400_px():
    assert rotor4d_gs.config.pipeline.datamanager.camera_res_scale_factor == 0.5
