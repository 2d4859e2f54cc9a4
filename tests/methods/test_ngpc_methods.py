"""Each NGPC method trains on CPU through nerfstudio's Trainer; ns-eval and ns-render load its checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from method_configs.ngpc import ngpc_trainer_config
from tests.training import reduce_for_cpu, run_cli, train

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
    config = _small_ngpc(encoding, tiny_lego, tmp_path / "outputs")
    losses = []

    def record(loss_dict):
        losses.append(loss_dict["rgb_loss"])

    trainer = train(config, on_loss=record)
    assert len(losses) == STEPS[encoding]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"loss did not fall: {first:.4f} -> {last:.4f}"

    trained = trainer.pipeline.get_average_eval_image_metrics()["psnr"]
    fresh_config = _small_ngpc(encoding, tiny_lego, tmp_path / "fresh")
    fresh_config.set_timestamp()
    fresh = fresh_config.setup(local_rank=0, world_size=1)
    fresh.setup()
    untrained = fresh.pipeline.get_average_eval_image_metrics()["psnr"]
    assert trained > untrained + 1.0, f"eval PSNR {untrained:.2f} -> {trained:.2f}"

    config_path = config.get_base_dir() / "config.yml"
    checkpoints = list(config.get_checkpoint_dir().glob("*.ckpt"))
    assert len(checkpoints) == 1

    metrics_path = tmp_path / "eval.json"
    result = run_cli(["ns-eval", "--load-config", str(config_path), "--output-path", str(metrics_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    eval_psnr = json.loads(metrics_path.read_text())["results"]["psnr"]
    assert eval_psnr > untrained

    video = tmp_path / "render.mp4"
    result = run_cli([
        "ns-render", "interpolate", "--load-config", str(config_path), "--output-path", str(video),
        "--interpolation-steps", "2", "--frame-rate", "4", "--downscale-factor", "2",
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    assert video.stat().st_size > 1000
