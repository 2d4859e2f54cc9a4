"""Each NGPC method trains on CPU through nerfstudio's Trainer; ns-eval and ns-render load its checkpoint."""

from __future__ import annotations

import pytest
import torch

from method_configs.ngpc import ngpc_trainer_config
from tests.training import reduce_for_cpu, train_and_check

# A single coarse dense level learns more slowly than the multi-level grids (few cells per sample).
STEPS = {"hashgrid": 40, "densegrid": 40, "lowres-densegrid": 100}


def _small_ngpc(encoding: str, data, output_dir):
    config = reduce_for_cpu(ngpc_trainer_config(encoding, unbounded=False), data, output_dir, STEPS[encoding])
    config.pipeline.target_num_samples = 1 << 14
    config.pipeline.datamanager.camera_res_scale_factor = 0.5  # 50x50 images
    model = config.pipeline.model
    model.field.log2_hashmap_size = 15
    model.sampler.grid_resolution = 32
    model.sampler.render_step_size = 0.04
    model.sampler.occ_warmup_steps = 8
    model.sampler.occ_update_every = 8
    model.eval_num_rays_per_chunk = 2500
    return config


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["hashgrid", "densegrid", "lowres-densegrid"])
def test_trains_evaluates_and_renders(encoding, tiny_lego, tmp_path, ffmpeg_on_path):
    torch.manual_seed(0)
    train_and_check(
        _small_ngpc(encoding, tiny_lego, tmp_path / "outputs"), _small_ngpc(encoding, tiny_lego, tmp_path / "fresh"),
        loss_key="rgb_loss", max_loss_ratio=0.7,
    )
