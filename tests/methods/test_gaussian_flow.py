"""``gaussian-flow`` and ``gaussian-flow-compressed`` train on the tiny D-NeRF lego through nerfstudio's Trainer."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from nerfstudio.utils.eval_utils import eval_setup

from method_configs.gaussian_flow import gaussian_flow, gaussian_flow_compressed
from ng_methods.compression.dynamic_codec import load_compact
from ng_methods.data.dnerf import NgDNeRFDataParserConfig
from tests.conftest import DATA_DIR, make_blender_subset
from tests.methods.splat_training import reduce_splat_for_cpu
from tests.training import run_cli, train, train_and_check

STEPS = 40


@pytest.fixture
def tiny_dnerf_lego(tmp_path):
    """The 100x100 D-NeRF lego test scene (20 train frames over time, 3 val, 3 test)."""
    splits = {"train": 20, "val": 3, "test": 3}
    return make_blender_subset(DATA_DIR / "dnerf-lego-tiny", tmp_path / "dnerf-lego", splits)


def _config(spec, data, out, steps=STEPS, num_gaussians=1000):
    config = copy.deepcopy(spec.config)
    config.pipeline.datamanager.dataparser = NgDNeRFDataParserConfig(alpha_color=None)
    config.pipeline.datamanager.images_per_step = 1  # the lego recipe's 8 would make the CPU run 8x longer
    return reduce_splat_for_cpu(config, data, out, steps, num_gaussians=num_gaussians, blender=False)


def _render_at(model, camera, time):
    camera = copy.deepcopy(camera)
    camera.times = torch.full_like(camera.times, time)
    with torch.no_grad():
        return model.get_outputs_for_camera(camera)["rgb"]


@pytest.mark.slow
def test_gaussian_flow_trains_evaluates_renders_and_moves(tiny_dnerf_lego, tmp_path, ffmpeg_on_path):
    config = _config(gaussian_flow, tiny_dnerf_lego, tmp_path / "outputs")
    trainer, _ = train_and_check(config, _config(gaussian_flow, tiny_dnerf_lego, tmp_path / "fresh"))
    model = trainer.pipeline.model
    model.eval()
    camera = trainer.pipeline.datamanager.eval_dataset.cameras[0:1]
    assert camera.times is not None
    early, late = _render_at(model, camera, 0.0), _render_at(model, camera, 1.0)
    assert (early - late).abs().max() > 1e-2  # the trajectories learnt motion: the same view differs in time
    for name in ("means_traj", "quats_traj", "features_dc_traj"):
        assert model.gauss_params[name].detach().abs().sum() > 0, name


@pytest.mark.slow
def test_compressed_variant_prunes_twice_and_round_trips(tiny_dnerf_lego, tmp_path):
    # scoring renders all 20 training views per round, so a shorter run with fewer Gaussians
    config = _config(gaussian_flow_compressed, tiny_dnerf_lego, tmp_path / "outputs", steps=20, num_gaussians=600)
    trainer = train(config)
    model = trainer.pipeline.model
    assert [step for step, _, _ in model.pruning_log] == [10, 12]  # 0.5, 0.6 of the run (Light4GS 15k/18k of 30k)
    for _, before, after in model.pruning_log:
        assert after == before - int(0.4 * before)
    assert model.num_points == model.pruning_log[-1][2]
    for name, optimizer in trainer.optimizers.optimizers.items():
        if name in model.gauss_params:
            assert optimizer.param_groups[0]["params"][0] is model.gauss_params[name]

    config_path = config.get_base_dir() / "config.yml"
    compact, report = tmp_path / "lego.ngd", tmp_path / "report.json"
    result = run_cli(["ng-dynamic-compress", "--load-config", str(config_path), "--output", str(compact),
                      "--report", str(report)])
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads(report.read_text())
    assert numbers["gaussians_after"] == numbers["gaussians_before"] == model.num_points
    assert numbers["mb_after"] < numbers["mb_before"]

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    restored = pipeline.model
    load_compact(restored, compact)
    restored.eval()
    model.eval()
    camera = trainer.pipeline.datamanager.eval_dataset.cameras[1:2]
    for time in (0.0, 0.5, 1.0):
        expected, decoded = _render_at(model, camera, time), _render_at(restored, camera, time)
        # stated tolerance: quantisation steps (SH 0.002, temporal 1e-4) change no pixel by more than 1/255
        assert (expected - decoded).abs().max() < 4e-3
