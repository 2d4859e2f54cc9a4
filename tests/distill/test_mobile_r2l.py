"""MobileR2L student: network shapes and sizes, the official LR schedule, ray images, and a tiny student trained
from the LLFF teacher through nerfstudio's trainer (loss, PSNR vs the teacher, checkpoint, ns-eval, ns-render, ONNX).
"""

from __future__ import annotations

import json

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from method_configs.mobile_r2l import mobile_r2l_trainer_config
from ng_methods.distill.mobile_r2l.model import MobileR2LModelConfig
from ng_methods.distill.mobile_r2l.network import (
    MobileR2LNetwork,
    NetworkSpec,
    count_residual_blocks,
    embedding_channels,
)
from ng_methods.distill.mobile_r2l.rays import embed_points, ndc_rays
from ng_methods.distill.mobile_r2l.schedule import AdamWOptimizerConfig, WarmupExponentialDecaySchedulerConfig
from tests.training import reduce_for_cpu, run_cli, train


@pytest.mark.parametrize(("scene_kind", "factor"), [("sphere", 8), ("forward_facing", 12)])
def test_output_is_input_times_the_super_resolution_factor(scene_kind, factor):
    network = MobileR2LNetwork(NetworkSpec(depth=4, width=32, scene_kind=scene_kind)).eval()
    assert network.spec.sr_factor == factor
    assert network(torch.rand(2, 312, 3, 5)).shape == (2, 3, 3 * factor, 5 * factor)


def test_official_sizes_312_channels_and_29_body_blocks():
    assert embedding_channels(samples_per_ray=8, frequencies=6) == 312
    spec = MobileR2LModelConfig().network_spec()
    assert (spec.input_channels, spec.depth, spec.width, spec.sr_channels) == (312, 60, 256, (64, 64, 16))
    network = MobileR2LNetwork(spec)
    assert spec.body_blocks == 29 and count_residual_blocks(network.body) == 29
    assert count_residual_blocks(network.tail) == 6  # 2 per upsampling stage
    assert [m.kernel_size for m in network.tail if isinstance(m, torch.nn.ConvTranspose2d)] == [(4, 4)] * 2 + [(3, 3)]


def test_embedding_is_sin_cos_then_raw_per_coordinate():
    points = torch.rand(5, 24)
    embedded = embed_points(points, frequencies=6).view(5, 24, 13)
    scaled = points[..., None] * 2.0 ** torch.arange(6.0)
    torch.testing.assert_close(embedded[..., :6], torch.sin(scaled))
    torch.testing.assert_close(embedded[..., 6:12], torch.cos(scaled))
    torch.testing.assert_close(embedded[..., 12], points)


def test_ndc_puts_ray_origins_on_the_near_plane():
    origins = torch.tensor([[0.1, -0.2, 0.0], [0.0, 0.0, 0.3]])
    directions = torch.tensor([[0.1, 0.05, -1.0], [-0.2, 0.1, -1.0]])
    ndc_o, ndc_d = ndc_rays(origins, directions, torch.tensor(1.0), torch.tensor(1.3))
    torch.testing.assert_close(ndc_o[:, 2], torch.full((2,), -1.0))
    assert torch.all(ndc_d[:, 2] > 0)  # the far end (t = 1) is at NDC z = +1


def test_warmup_then_exponential_decay_matches_the_official_schedule():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = AdamWOptimizerConfig(lr=5e-4).setup([parameter])
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 0.01
    scheduler = WarmupExponentialDecaySchedulerConfig().setup().get_scheduler(optimizer, lr_init=5e-4)
    lr = lambda step: 5e-4 * scheduler.lr_lambdas[0](step)  # noqa: E731
    expected = {0: 1e-4, 100: 3e-4, 200: 5e-4, 200 + 500_000: 5e-5, 600_000: 5e-4 * 0.1 ** (599_800 / 500_000)}
    for step, value in expected.items():
        assert lr(step) == pytest.approx(value, rel=1e-9), step
    assert all(isinstance(v, (int, float)) for v in scheduler.state_dict()["lr_lambdas"][0].values())
    optimizers = mobile_r2l_trainer_config("llff").optimizers["network"]
    assert isinstance(optimizers["scheduler"], WarmupExponentialDecaySchedulerConfig)


def _camera(height: int, width: int) -> Cameras:
    return Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=60.0, fy=60.0, cx=25.0, cy=25.0, width=width,
                   height=height)


def test_odd_resolution_renders_the_next_multiple_and_crops():
    model = MobileR2LModelConfig(scene_kind="sphere", use_ndc=False, near_plane=2.0, far_plane=6.0, depth=4,
                                 width=32).setup(scene_box=None, num_train_data=1, metadata={}).eval()
    cropped = model.get_outputs_for_camera(_camera(50, 50))["rgb"]
    padded = model.get_outputs_for_camera(_camera(56, 56))["rgb"]  # 7 x 8 = 56: the same rays, uncropped
    assert cropped.shape == (50, 50, 3)
    torch.testing.assert_close(cropped, padded[:50, :50])


def test_missing_teacher_config_is_a_clear_error(tmp_path):
    from ng_methods.distill.mobile_r2l.datamanager import MobileR2LDataManagerConfig
    from ng_methods.distill.teacher import TeacherConfigError

    missing = tmp_path / "outputs" / "config.yml"
    with pytest.raises(TeacherConfigError, match=str(missing)):
        MobileR2LDataManagerConfig(teacher_config=missing).setup(device="cpu")
    with pytest.raises(TeacherConfigError, match="teacher-config"):
        MobileR2LDataManagerConfig().setup(device="cpu")


def test_missing_onnx_packages_are_named_with_the_install_command():
    from ng_methods.distill.mobile_r2l.onnx_export import require

    with pytest.raises(ImportError, match=r"pip install 'ng-methods\[onnx\]'"):
        require("onnxruntime_that_does_not_exist", "Checking the ONNX export")


# ---------------------------------------------------------------------------------------- trained student
STEPS = 30


@pytest.fixture(scope="module")
def trained_student(llff_teacher_config, tmp_path_factory):
    """A tiny ``mobile-r2l`` student trained STEPS steps on two 23x31 pseudo-images of the LLFF teacher (the CPU
    teacher renders slowly, so the pseudo-data is small), and an untrained twin."""
    config = mobile_r2l_trainer_config("llff")
    config = reduce_for_cpu(config, None, tmp_path_factory.mktemp("mobile-r2l") / "outputs", STEPS)
    datamanager = config.pipeline.datamanager
    datamanager.data, datamanager.dataparser.data = None, None
    datamanager.teacher_config = llff_teacher_config
    datamanager.images_per_batch, datamanager.num_pseudo_images, datamanager.pseudo_downscale = 2, 2, 4.0
    datamanager.pseudo_cache_dir = tmp_path_factory.mktemp("pseudo")
    config.pipeline.model.depth, config.pipeline.model.width = 4, 64
    config.optimizers["network"]["optimizer"].lr = 3e-3  # a few dozen steps instead of 600k
    config.optimizers["network"]["scheduler"].warmup_steps = 1
    losses = []
    torch.manual_seed(0)
    untrained = config.pipeline.model.setup(scene_box=None, num_train_data=1, metadata={})
    torch.manual_seed(0)
    trainer = train(config, on_loss=lambda loss_dict: losses.append(loss_dict["rgb_loss"]))
    untrained.load_state_dict({"ndc_frame": trainer.pipeline.model.ndc_frame}, strict=False)
    untrained.ndc_scale = trainer.pipeline.model.ndc_scale
    return trainer, untrained, config.get_base_dir() / "config.yml", losses


@pytest.mark.slow
def test_distillation_loss_falls_and_psnr_vs_teacher_rises(trained_student):
    trainer, untrained, _, losses = trained_student
    assert len(losses) == STEPS
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"loss did not fall: {first:.4f} -> {last:.4f}"
    cache = trainer.pipeline.datamanager.pseudo_cache()
    camera, teacher_rgb = cache.get(trainer.pipeline.datamanager.config.num_pseudo_images)  # a held-out pose
    trainer.pipeline.eval()

    def psnr(model) -> float:
        predicted = model.eval().get_outputs_for_camera(camera)["rgb"]
        return float(-10 * torch.log10(torch.mean((predicted - teacher_rgb) ** 2)))

    before, after = psnr(untrained), psnr(trainer.pipeline.model)
    assert after > before + 1.0, f"PSNR vs teacher {before:.2f} -> {after:.2f}"


@pytest.mark.slow
def test_checkpoint_round_trip(trained_student):
    from ng_methods.distill.mobile_r2l.cli import load_student

    trainer, _, config_path, _ = trained_student
    loaded = load_student(config_path)
    camera = trainer.pipeline.datamanager.eval_dataset.cameras[0:1]
    trainer.pipeline.eval()
    expected = trainer.pipeline.model.get_outputs_for_camera(camera)["rgb"]
    torch.testing.assert_close(loaded.model.get_outputs_for_camera(camera)["rgb"], expected)


@pytest.mark.slow
def test_ns_eval_and_ns_render(trained_student, tmp_path):
    _, _, config_path, _ = trained_student
    metrics = tmp_path / "eval.json"
    result = run_cli(["ns-eval", "--load-config", str(config_path), "--output-path", str(metrics)])
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(metrics.read_text())["results"]
    assert results["psnr"] > 5 and results["fps"] > 0
    renders = tmp_path / "renders"
    result = run_cli(["ns-render", "dataset", "--load-config", str(config_path), "--output-path", str(renders),
                      "--split", "test", "--rendered-output-names", "rgb"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(renders.rglob("*.jpg")) + list(renders.rglob("*.png"))) >= 1


@pytest.mark.slow
def test_onnx_export_reproduces_pytorch(trained_student, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'ng-methods[onnx]')")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'ng-methods[onnx]')")
    from ng_methods.distill.mobile_r2l.cli import ExportOnnx

    _, _, config_path, _ = trained_student
    report = ExportOnnx(load_config=config_path, output_path=tmp_path / "student.onnx", exporter="torchscript",
                        snap_gelu=True).main()
    assert report.path.is_file() and report.max_abs_difference <= 1e-4
    assert report.input_shape == (1, 312, 8, 11) and report.output_shape == (1, 3, 96, 132)  # 94x126 fern
    assert report.snap_gelu_path.is_file()
    assert "max |difference|" in capsys.readouterr().out
