"""The splat base (``ng-splatfacto``) trains on CPU through nerfstudio's Trainer, and the nerfstudio tools load it."""

from __future__ import annotations

import copy

import pytest
import torch

from method_configs.splat import ng_splatfacto
from tests.methods.splat_training import reduce_splat_for_cpu
from tests.training import run_ns_export, train, train_and_check

STEPS = 40


def _config(data, out, steps=STEPS):
    return reduce_splat_for_cpu(copy.deepcopy(ng_splatfacto.config), data, out, steps)


@pytest.mark.slow
def test_trains_evaluates_renders_and_exports(tiny_lego, tmp_path, ffmpeg_on_path):
    config = _config(tiny_lego, tmp_path / "outputs")
    trainer, config_path = train_and_check(config, _config(tiny_lego, tmp_path / "fresh"))
    model = trainer.pipeline.model
    assert model.device.type == "cpu"

    ply = tmp_path / "export"
    result = run_ns_export(["gaussian-splat", "--load-config", str(config_path), "--output-dir", str(ply)])
    assert result.returncode == 0, result.stderr[-3000:]
    header = (ply / "splat.ply").read_bytes()[:2000]
    assert b"property float f_dc_0" in header and b"property float rot_3" in header
    count = int(header.split(b"element vertex ")[1].split(b"\n")[0])
    assert 0 < count <= model.num_points


def test_densification_runs_on_cpu(tiny_lego, tmp_path):
    """gsplat's DefaultStrategy grows Gaussians from the reference rasteriser's absgrad."""
    config = _config(tiny_lego, tmp_path / "outputs", steps=32)
    model = config.pipeline.model
    model.warmup_length = 5
    model.refine_every = 10  # refines at step 30: after the pause of (#images + refine_every) steps
    model.densify_grad_thresh = 1e-6  # every visible Gaussian qualifies
    model.cull_alpha_thresh = 0.0  # and nothing is culled, so the count can only grow
    model.cull_scale_thresh = 100.0
    model.num_random = 300
    trainer = train(config)
    assert trainer.pipeline.model.num_points > 300
    # the optimizers follow the new parameters
    params = trainer.pipeline.model.gauss_params
    for name, optimizer in trainer.optimizers.optimizers.items():
        if name in params:
            assert optimizer.param_groups[0]["params"][0] is params[name]


def test_resume_keeps_optimising_the_loaded_parameters(tiny_lego, tmp_path):
    first = _config(tiny_lego, tmp_path / "outputs", steps=10)
    trainer = train(first)
    saved = trainer.pipeline.model.gauss_params["means"].detach().clone()

    resumed = _config(tiny_lego, tmp_path / "outputs", steps=16)
    resumed.load_dir = first.get_checkpoint_dir()
    trainer2 = resumed.setup(local_rank=0, world_size=1)
    trainer2.setup()
    model = trainer2.pipeline.model
    assert model.step == 9 and torch.equal(model.gauss_params["means"].detach(), saved)
    for name, optimizer in trainer2.optimizers.optimizers.items():
        if name in model.gauss_params:
            assert optimizer.param_groups[0]["params"][0] is model.gauss_params[name]
    trainer2.train()
    assert not torch.equal(model.gauss_params["means"].detach(), saved)
