"""Shrink a splat method's config for a CPU run."""

from __future__ import annotations

from pathlib import Path

from nerfstudio.engine.trainer import TrainerConfig

from ng_methods.data.blender import NgBlenderDataParserConfig
from tests.training import reduce_for_cpu


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
