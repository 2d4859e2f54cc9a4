"""``4d-rotor-gs`` trains on CPU on a tiny D-NeRF scene, renders time-dependent images, and the CLIs load it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from method_configs._common import constant_adam
from method_configs.dynamic import rotor4d_gs
from ng_methods.data.dnerf import NgDNeRFDataParserConfig
from tests.conftest import DATA_DIR
from tests.methods.splat_training import reduce_splat_for_cpu
from tests.training import run_cli, train, train_and_check

DNERF_TINY = DATA_DIR / "dnerf-lego-tiny"
STEPS = 30


def _config(out: Path, steps: int = STEPS, num_gaussians: int = 800, images_per_step: int = 1):
    config = copy.deepcopy(rotor4d_gs.config)
    config.pipeline.datamanager.dataparser = NgDNeRFDataParserConfig(alpha_color=None)
    config.pipeline.datamanager.images_per_step = images_per_step  # the method's 3 would triple CPU time
    config = reduce_splat_for_cpu(config, DNERF_TINY, out, steps, num_gaussians=num_gaussians, blender=False)
    # A few dozen steps instead of 20k: faster colour and opacity learning rates so the loss visibly falls.
    config.optimizers["features_dc"] = constant_adam(0.02)
    config.optimizers["opacities"] = constant_adam(0.1)
    return config


def _camera_path(camera_to_world: np.ndarray, times, size: int = 40) -> dict:
    c2w = np.eye(4)
    c2w[:3, :4] = camera_to_world
    keyframes = [
        {"camera_to_world": c2w.reshape(-1).tolist(), "fov": 50.0, "aspect": 1.0, "render_time": float(t)}
        for t in times
    ]
    return {"render_height": size, "render_width": size, "seconds": 1.0, "fps": len(times),
            "camera_type": "perspective", "camera_path": keyframes}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("rotor4d")
    config = _config(out / "outputs")
    trainer, config_path = train_and_check(config, _config(out / "fresh"), check_cli=False)
    return trainer, config_path, out


@pytest.mark.slow
def test_trains_and_cameras_carry_times(trained):
    trainer, _, _ = trained
    model = trainer.pipeline.model
    assert model.device.type == "cpu"
    assert trainer.pipeline.datamanager.includes_time  # the viewer shows its time slider
    camera, _ = trainer.pipeline.datamanager.fixed_indices_eval_dataloader[1]
    assert camera.times is not None and 0.0 < float(camera.times) < 1.0
    assert {"means", "times", "scales", "scales_t", "rotors"} <= set(model.gauss_params)


@pytest.mark.slow
def test_renders_differ_between_times(trained):
    trainer, _, _ = trained
    model = trainer.pipeline.model
    model.eval()
    camera, _ = trainer.pipeline.datamanager.fixed_indices_eval_dataloader[0]
    renders = {}
    for t in (0.1, 0.9, 0.1):
        cam = copy.deepcopy(camera)
        cam.times = torch.full_like(cam.times, t)
        renders.setdefault(t, []).append(model.get_outputs_for_camera(cam)["rgb"])
    assert torch.equal(renders[0.1][0], renders[0.1][1])  # same time, same image
    moved = (renders[0.1][0] - renders[0.9][0]).abs().amax(dim=-1)
    assert moved.max() > 0.05, "rendering at another time changed nothing"
    assert (moved > 1e-3).float().mean() < 1.0  # and not every pixel (the black background stays black)

    # cameras without times (ns-render interpolate) render at the configured default time
    untimed = copy.deepcopy(camera)
    untimed.times = None
    model.config.default_time = float(torch.tensor(0.9))  # the float32 value the timed camera carried
    try:
        torch.testing.assert_close(model.get_outputs_for_camera(untimed)["rgb"], renders[0.9][0])
    finally:
        model.config.default_time = 0.0


@pytest.mark.slow
def test_ns_eval_and_ns_render_camera_path_with_times(trained, ffmpeg_on_path):
    trainer, config_path, out = trained
    metrics_path = out / "eval.json"
    result = run_cli(["ns-eval", "--load-config", str(config_path), "--output-path", str(metrics_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(metrics_path.read_text())["results"]["psnr"] > 5.0

    camera, _ = trainer.pipeline.datamanager.fixed_indices_eval_dataloader[0]
    path_file = out / "camera_path.json"
    path_file.write_text(json.dumps(_camera_path(camera.camera_to_worlds[0].numpy(), [0.1, 0.9])))
    frames = out / "frames"
    result = run_cli([
        "ns-render", "camera-path", "--load-config", str(config_path), "--camera-path-filename", str(path_file),
        "--output-path", str(frames), "--output-format", "images",
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    images = sorted(frames.glob("*.png")) or sorted(frames.glob("*.jpg"))
    assert len(images) == 2
    first, second = (np.asarray(Image.open(p), dtype=np.float32) for p in images)
    assert np.abs(first - second).max() > 10, "the keyframes' render_time did not reach the model"


@pytest.mark.slow
def test_densification_grows_in_4d_with_batches_of_cameras(tmp_path):
    """Two cameras per step (the official batching); the 4D strategy splits/duplicates on the xy and t gradient
    rules (tiny thresholds) and the optimizers follow the new parameters."""
    config = _config(tmp_path / "outputs", steps=11, num_gaussians=300, images_per_step=2)
    model = config.pipeline.model
    model.warmup_length = 5
    model.refine_every = 10  # refines once, at step 10
    model.densify_grad_thresh = 1e-9  # every rendered Gaussian qualifies
    model.densify_time_grad_thresh = 1e-9
    model.cull_alpha_thresh = 0.0
    model.stop_screen_size_at = 0  # no pruning of big Gaussians either, so the count can only grow
    losses = []
    trainer = train(config, on_loss=losses.append)
    assert {"main_loss", "entropy_loss", "consistency_loss"} <= set(losses[0])
    model = trainer.pipeline.model
    state = model.strategy_state
    assert state["num_split"] + state["num_duplicated"] > 0
    assert model.num_points > 300
    lengths = {p.shape[0] for p in model.gauss_params.values()}
    assert lengths == {model.num_points}
    for name, optimizer in trainer.optimizers.optimizers.items():
        if name in model.gauss_params:
            assert optimizer.param_groups[0]["params"][0] is model.gauss_params[name]
