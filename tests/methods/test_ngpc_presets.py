"""NGPC presets beyond the default: unbounded captures, S3IM, and resuming from a checkpoint."""

from __future__ import annotations

import torch
import pytest

from method_configs.ngpc import ngpc_trainer_config
from ng_methods.data.llff import LLFFDataParserConfig
from tests.conftest import DATA_DIR
from tests.training import reduce_for_cpu, train


def _shrink(config, steps_per_save=None):
    config.pipeline.target_num_samples = 1 << 13
    model = config.pipeline.model
    model.field.log2_hashmap_size = 14
    model.sampler.grid_resolution = 32
    model.sampler.occ_warmup_steps = 4
    model.sampler.occ_update_every = 4
    if steps_per_save:
        config.steps_per_save = steps_per_save
        config.save_only_latest_checkpoint = False
    return config


@pytest.mark.slow
def test_unbounded_preset_trains_on_a_real_forward_facing_capture(tmp_path):
    torch.manual_seed(0)
    data = DATA_DIR / "llff-fern-tiny"
    config = reduce_for_cpu(ngpc_trainer_config("hashgrid", unbounded=True), data, tmp_path, steps=30)
    assert isinstance(config.pipeline.datamanager.dataparser, LLFFDataParserConfig)
    config.pipeline.datamanager.dataparser.cache_dir = tmp_path / "cache"
    config = _shrink(config)
    config.pipeline.model.sampler.render_step_size = 0.02
    losses = []
    train(config, on_loss=lambda d: losses.append(d["rgb_loss"]))
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses


@pytest.mark.slow
def test_s3im_loss_is_trained_with_dynamic_batches(tiny_lego, tmp_path):
    torch.manual_seed(0)
    config = _shrink(reduce_for_cpu(ngpc_trainer_config("hashgrid", unbounded=False), tiny_lego, tmp_path, 12))
    config.pipeline.model.sampler.render_step_size = 0.04
    config.pipeline.model.s3im.weight = 1.0
    seen = []
    train(config, on_loss=seen.append)
    assert all("s3im_loss" in d for d in seen)
    assert all(0.0 <= d["s3im_loss"] <= 2.0 for d in seen)
    assert any(d["s3im_loss"] > 0.0 for d in seen)


@pytest.mark.slow
def test_training_resumes_from_its_last_checkpoint(tiny_lego, tmp_path):
    torch.manual_seed(0)
    first = _shrink(reduce_for_cpu(ngpc_trainer_config("hashgrid", False), tiny_lego, tmp_path / "a", 10), 5)
    first.pipeline.model.sampler.render_step_size = 0.04
    trainer = train(first)
    checkpoint_dir = first.get_checkpoint_dir()
    assert sorted(p.name for p in checkpoint_dir.glob("*.ckpt")) == ["step-000000005.ckpt", "step-000000009.ckpt"]
    saved_table = trainer.pipeline.model.field.encoding.table.detach().clone()
    saved_occupancy = trainer.pipeline.model.sampler.estimator.binaries.clone()

    second = _shrink(reduce_for_cpu(ngpc_trainer_config("hashgrid", False), tiny_lego, tmp_path / "b", 12))
    second.pipeline.model.sampler.render_step_size = 0.04
    second.load_dir = checkpoint_dir
    second.set_timestamp()
    resumed = second.setup(local_rank=0, world_size=1)
    resumed.setup()
    assert resumed._start_step == 10
    torch.testing.assert_close(resumed.pipeline.model.field.encoding.table, saved_table, rtol=0, atol=0)
    assert torch.equal(resumed.pipeline.model.sampler.estimator.binaries, saved_occupancy)
