"""neus2's recipe shrunk to train a few steps on the tiny DTU scene on CPU (shared by the method and mesh tests)."""

from __future__ import annotations

from pathlib import Path

from method_configs.neus2 import neus2_trainer_config
from tests.conftest import DATA_DIR
from tests.training import reduce_for_cpu


def small_neus2_config(output_dir: Path, steps: int):
    """The same code path with CPU-sized grids, samples and images."""
    config = reduce_for_cpu(neus2_trainer_config(), DATA_DIR / "dtu-scan65-tiny", output_dir, steps)
    config.pipeline.target_num_samples = 1 << 11
    config.pipeline.max_num_samples_per_ray = 64
    config.pipeline.datamanager.camera_res_scale_factor = 0.5  # 50x37 images
    config.pipeline.datamanager.dataparser.holdout_every = 4  # views 0 and 4 evaluate (ns-eval stays quick)
    model = config.pipeline.model
    model.field.n_levels = 4
    model.field.log2_hashmap_size = 12
    model.field.top_resolution = 64.0
    model.sampler.grid_resolution = 16
    model.sampler.occ_warmup_steps = 8
    model.marching_steps_per_diagonal = 128
    model.levels.base_training_step = 5  # the level schedule runs within the few steps
    model.levels.valid_level_scale = 0.2
    model.eval_num_rays_per_chunk = 2048
    return config
