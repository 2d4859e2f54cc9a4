"""The dynamic compact file: quantised + entropy-coded SH and temporal parameters round-trip to the same image."""

from __future__ import annotations

import pytest
import torch

from ng_methods.compression.dynamic_codec import (
    DynamicCodecConfig, load_compact, read_compact, save_compact, uncompressed_bytes,
)
from tests.gaussian_flow.helpers import look_at_origin, tiny_model


def _trained_looking_model():
    model = tiny_model(num_gaussians=60, seed=3)
    with torch.no_grad():
        model.gauss_params["means_traj"][:, :2].normal_(std=0.1)  # higher orders stay at zero, as in training
        model.gauss_params["quats_traj"].normal_(std=0.05)
        model.gauss_params["features_dc_traj"].normal_(std=0.1)
        model.gauss_params["features_rest"].normal_(std=0.05)
        model.gauss_params["time_offsets"].normal_(std=0.02)
    return model


def test_round_trip_renders_the_same_images_and_is_smaller(tmp_path):
    model = _trained_looking_model()
    cameras = look_at_origin(times=(0.0, 0.35, 0.7, 1.0))
    with torch.no_grad():
        before = [model.get_outputs(cameras[i : i + 1])["rgb"] for i in range(4)]
    path = tmp_path / "scene.ngd"
    size = save_compact(model, path)
    assert size < uncompressed_bytes(model)

    restored = tiny_model(num_gaussians=10, seed=9)  # a different count: the loader resizes
    meta = load_compact(restored, path)
    assert meta["num_gaussians"] == 60 and meta["model"] == "GaussianFlowModel"
    with torch.no_grad():
        after = [restored.get_outputs(cameras[i : i + 1])["rgb"] for i in range(4)]
    for a, b in zip(before, after):
        # stated tolerance: SH step 0.002 and temporal step 1e-4 move a pixel by well under 1/255
        assert (a - b).abs().max() < 2e-3
        assert (a - b).abs().mean() < 2e-4


def test_decoding_error_is_at_most_half_a_step(tmp_path):
    model = _trained_looking_model()
    config = DynamicCodecConfig(sh_step=0.01, dc_step=0.004, temporal_step=1e-3)
    save_compact(model, tmp_path / "scene.ngd", config)
    tensors, _ = read_compact(tmp_path / "scene.ngd")
    steps = {"features_rest": 0.01, "features_dc": 0.004, "means_traj": 1e-3, "quats_traj": 1e-3,
             "features_dc_traj": 1e-3, "time_offsets": 1e-3}
    for name, param in model.gauss_params.items():
        error = (tensors[name] - param.detach()).abs().max().item()
        assert error <= steps.get(name, 0.0) / 2 + 1e-6, (name, error)
    assert torch.count_nonzero(tensors["means_traj"][:, 2:]) == 0  # untouched coefficients stay exactly zero


def test_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.ngd"
    bad.write_bytes(b"not a container")
    with pytest.raises(ValueError, match="bad magic"):
        read_compact(bad)
