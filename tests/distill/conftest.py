"""Session-scoped teachers for the distillation students: small NGPC models trained a few dozen CPU steps.

Each fixture trains once per test session, and only when a test asks for it. The teachers are weak (30-60
steps) but real: saved ``config.yml`` plus one checkpoint, loadable by ``load_teacher`` and ``ns-eval``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nerfstudio.engine.trainer import TrainerConfig

from method_configs.ngpc import ngpc_trainer_config
from tests.conftest import DATA_DIR, make_blender_subset
from tests.training import reduce_for_cpu, train

BLENDER_TEACHER_STEPS = 40
LLFF_TEACHER_STEPS = 30


def _shrink_ngpc(config: TrainerConfig) -> TrainerConfig:
    """A small grid and a coarse occupancy grid: fast to train and cheap to render on CPU."""
    config.pipeline.target_num_samples = 1 << 13
    model = config.pipeline.model
    model.field.log2_hashmap_size = 14
    model.sampler.grid_resolution = 32
    model.sampler.occ_warmup_steps = 8
    model.sampler.occ_update_every = 8
    model.eval_num_rays_per_chunk = 4096
    return config


def _train_teacher(config: TrainerConfig) -> Path:
    torch.manual_seed(0)
    train(config)
    return config.get_base_dir() / "config.yml"


@pytest.fixture(scope="session")
def blender_teacher_config(tmp_path_factory) -> Path:
    """``ngpc-hashgrid`` trained on 50x50 lego (20 train, 2 val, 2 test views); returns its ``config.yml``."""
    root = tmp_path_factory.mktemp("blender-teacher")
    data = make_blender_subset(DATA_DIR / "lego-100", root / "lego", {"train": 20, "val": 2, "test": 2})
    config = reduce_for_cpu(ngpc_trainer_config("hashgrid", unbounded=False), data, root / "outputs",
                            BLENDER_TEACHER_STEPS)
    config.pipeline.datamanager.camera_res_scale_factor = 0.5
    config = _shrink_ngpc(config)
    # A coarse step: about 40 samples a ray through the scene box, cheap for students that render it every step.
    config.pipeline.model.sampler.render_step_size = 0.08
    return _train_teacher(config)


@pytest.fixture(scope="session")
def llff_teacher_config(tmp_path_factory) -> Path:
    """``ngpc-hashgrid-unbounded`` trained on the tiny fern capture (forward-facing); returns its ``config.yml``."""
    root = tmp_path_factory.mktemp("llff-teacher")
    config = reduce_for_cpu(ngpc_trainer_config("hashgrid", unbounded=True), DATA_DIR / "llff-fern-tiny",
                            root / "outputs", LLFF_TEACHER_STEPS)
    config.pipeline.datamanager.dataparser.cache_dir = root / "cache"
    config = _shrink_ngpc(config)
    # Two occupancy levels and a coarse step keep a render near 100 samples a ray (students render it every step).
    config.pipeline.model.sampler.grid_levels = 2
    config.pipeline.model.sampler.render_step_size = 0.06
    return _train_teacher(config)
