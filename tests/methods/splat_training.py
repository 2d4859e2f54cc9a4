"""Shrink a splat method's config for a CPU run, and the train / eval / ns-eval / ns-render check they share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Optional

import torch
from nerfstudio.engine.trainer import TrainerConfig

from ng_methods.data.blender import NgBlenderDataParserConfig
from tests.training import reduce_for_cpu, run_cli, train


def reduce_splat_for_cpu(config: TrainerConfig, data: Path, output_dir: Path, steps: int,
                         num_gaussians: int = 1500, blender: bool = True) -> TrainerConfig:
    """A few thousand random Gaussians, half-resolution images, full-resolution training from the first step."""
    if blender:
        config.pipeline.datamanager.dataparser = NgBlenderDataParserConfig(alpha_color=None)
    config = reduce_for_cpu(config, data, output_dir, steps)
    config.pipeline.datamanager.camera_res_scale_factor = 0.5
    model = config.pipeline.model
    model.random_init = True
    model.num_random = num_gaussians
    model.random_scale = 2.6
    model.num_downscales = 0
    model.rasterizer_backend = "torch"
    return config


def train_and_check(config: TrainerConfig, fresh_config: TrainerConfig, loss_key: str = "main_loss",
                    min_gain_db: float = 1.0, check_cli: bool = True,
                    on_loss: Optional[Callable[[dict], None]] = None):
    """Train; the loss falls, eval PSNR beats an untrained model, ns-eval and ns-render load the checkpoint."""
    torch.manual_seed(0)
    losses: List[float] = []

    def record(loss_dict):
        losses.append(loss_dict[loss_key])
        if on_loss is not None:
            on_loss(loss_dict)

    trainer = train(config, on_loss=record)
    assert len(losses) == config.max_num_iterations
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, f"loss did not fall: {first:.4f} -> {last:.4f}"

    trained = trainer.pipeline.get_average_eval_image_metrics()["psnr"]
    torch.manual_seed(0)
    fresh_config.set_timestamp()
    fresh = fresh_config.setup(local_rank=0, world_size=1)
    fresh.setup()
    untrained = fresh.pipeline.get_average_eval_image_metrics()["psnr"]
    assert trained > untrained + min_gain_db, f"eval PSNR {untrained:.2f} -> {trained:.2f}"

    config_path = config.get_base_dir() / "config.yml"
    assert len(list(config.get_checkpoint_dir().glob("*.ckpt"))) == 1
    if check_cli:
        out = Path(config.output_dir)
        metrics_path = out / "eval.json"
        result = run_cli(["ns-eval", "--load-config", str(config_path), "--output-path", str(metrics_path)])
        assert result.returncode == 0, result.stderr[-3000:]
        eval_psnr = json.loads(metrics_path.read_text())["results"]["psnr"]
        assert eval_psnr > untrained, (eval_psnr, untrained)  # ns-eval scores the test split, training the val split

        video = out / "render.mp4"
        result = run_cli([
            "ns-render", "interpolate", "--load-config", str(config_path), "--output-path", str(video),
            "--interpolation-steps", "2", "--frame-rate", "4", "--downscale-factor", "2",
        ])
        assert result.returncode == 0, result.stderr[-3000:]
        assert video.stat().st_size > 1000
    return trainer, config_path
