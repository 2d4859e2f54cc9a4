"""PVD-AL student: schedule, density clamp, active learning, adapters, and training through nerfstudio."""

from __future__ import annotations

import math

import pytest
import torch
from nerfstudio.cameras.rays import Frustums, RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

from ng_methods.distill.pvd.active_learning import (
    HardPoseConfig,
    HardPosePool,
    HardRayPool,
    hard_point_mask,
    perturb_poses,
)
from ng_methods.distill.pvd.adapters import FeatureProjector, adapter_for
from ng_methods.distill.pvd.fields import MLPNeRFConfig, VMConfig, build_student_field
from ng_methods.distill.pvd.schedule import COLOR, DENSITY, FEATURES, RGB, PVDScheduleConfig
from ng_methods.ngpc.field import NGPCFieldConfig

AABB = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
KINDS = ["mlp", "hashgrid", "densegrid", "lowres-densegrid", "vm"]


def _samples(n: int = 11, seed: int = 0) -> RaySamples:
    generator = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    starts = torch.rand(n, 1, generator=generator)
    return RaySamples(frustums=Frustums(origins=torch.zeros(n, 3), directions=directions, starts=starts,
                                        ends=starts + 0.1, pixel_area=torch.ones(n, 1)))


def _field(kind: str):
    torch.manual_seed(0)
    mlp = MLPNeRFConfig(num_layers=4, width=32, skip_after=1)
    return build_student_field(kind, NGPCFieldConfig(log2_hashmap_size=10), mlp, VMConfig(resolution=8), AABB, None)


def test_density_clamp_is_official_range():
    schedule = PVDScheduleConfig()
    logits = torch.tensor([-100.0, -2.5, 0.0, 6.9, 50.0])
    assert torch.equal(schedule.clamp_density(logits), torch.tensor([-2.0, -2.0, 0.0, 6.9, 7.0]))
    field = _field("hashgrid")
    with torch.no_grad():
        field.density_mlp.layers[-1].weight.mul_(1e4)  # push raw logits far outside the range
    query = adapter_for(field).query(_samples(), schedule.clamp_density)
    assert query.density_logit.min() >= -2.0 and query.density_logit.max() <= 7.0
    assert torch.equal(query.features[:, :1], query.density_logit)


def test_stage_schedule_switches_terms_on():
    schedule = PVDScheduleConfig(stage1_end=10, stage2_end=20)
    assert schedule.active_terms(1) == {FEATURES}
    assert schedule.active_terms(9) == {FEATURES}
    assert schedule.active_terms(10) == {FEATURES, DENSITY, COLOR}
    assert schedule.active_terms(19) == {FEATURES, DENSITY, COLOR}
    assert schedule.active_terms(20) == {FEATURES, DENSITY, COLOR, RGB}
    assert [schedule.stage(s) for s in (1, 10, 20, 10**6)] == [1, 2, 3, 3]
    # Plenoxels-style fields have no features: stage 1 is dropped and features never enter the loss.
    assert schedule.stage(1, skip_stage1=True) == 2
    assert schedule.active_terms(25, skip_stage1=True) == {DENSITY, COLOR, RGB}


def test_feature_weight_decays_every_step():
    schedule = PVDScheduleConfig()
    assert schedule.feature_weight_at(0) == pytest.approx(2e-3)
    assert schedule.feature_weight_at(1) == pytest.approx(2e-3 * 0.995)
    for step in (10, 100, 3000):
        ratio = schedule.feature_weight_at(step + 1) / schedule.feature_weight_at(step)
        assert ratio == pytest.approx(0.995)
    assert (schedule.density_weight, schedule.color_weight, schedule.rgb_weight) == (2e-3, 2e-3, 1.0)


def test_hard_ray_pool_keeps_largest_errors_and_replays_them():
    n = 50
    errors = torch.rand(n, generator=torch.Generator().manual_seed(1))
    hard = HardRayPool.hardest(errors, n, 0.1)
    assert set(hard.tolist()) == set(torch.topk(errors, 5).indices.tolist())
    bundle = RayBundle(origins=torch.arange(n, dtype=torch.float32)[:, None].expand(n, 3).clone(),
                       directions=torch.ones(n, 3), pixel_area=torch.ones(n, 1),
                       camera_indices=torch.zeros(n, 1, dtype=torch.long))
    pool = HardRayPool(capacity=10, ratio=0.1)
    assert pool.draw(n) is None  # nothing replayed before the pool is full
    pool.update(bundle, errors, n, None)
    pool.update(bundle, errors, n, None)
    assert pool.full and len(pool) == 10
    assert set(pool.rays["origins"][:, 0].long().tolist()) == set(hard.tolist())
    slots = pool.draw(n, torch.Generator().manual_seed(0))
    assert len(slots) == 5
    new_errors = torch.zeros(n)
    new_errors[:5] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])  # rays 0-4 are now the hardest
    pool.update(bundle, new_errors, n, slots)
    assert sorted(pool.rays["origins"][slots, 0].long().tolist()) == [0, 1, 2, 3, 4]


def test_replayed_rays_join_batch():
    from nerfstudio.data.scene_box import SceneBox

    from ng_methods.distill.pvd.model import PVDModelConfig

    config = PVDModelConfig(student="hashgrid", field=NGPCFieldConfig(log2_hashmap_size=10))
    config.active.hard_rays_pool_size = 20
    model = config.setup(scene_box=SceneBox(aabb=AABB), num_train_data=1)
    n = 100
    bundle = RayBundle(origins=torch.rand(n, 3), directions=torch.ones(n, 3), pixel_area=torch.ones(n, 1),
                       camera_indices=torch.zeros(n, 1, dtype=torch.long))
    same, slots = model._with_replayed_rays(bundle)
    assert same is bundle and slots is None  # empty pool: nothing replayed
    model.ray_pool.update(bundle, torch.arange(n, dtype=torch.float32), n, None)
    model.ray_pool.update(bundle, torch.arange(n, dtype=torch.float32), n, None)
    extended, slots = model._with_replayed_rays(bundle)
    assert len(extended) == n + 10 and len(slots) == 10
    assert torch.equal(extended.origins[:n], bundle.origins)
    assert set(extended.origins[n:, 0].tolist()) <= set(bundle.origins[90:, 0].tolist())  # the 10 hardest


def test_hard_pose_perturbation_is_within_pi_over_20():
    generator = torch.Generator().manual_seed(0)
    poses = torch.eye(4)[:3].expand(200, 3, 4).clone()
    poses[:, :, 3] = torch.randn(200, 3, generator=generator)
    perturbed, angles = perturb_poses(poses, math.pi / 20, generator)
    assert angles.abs().max() <= math.pi / 20 and angles.abs().max() > math.pi / 40
    assert torch.equal(perturbed[:, :, 3], poses[:, :, 3])  # centres stay
    rotation = perturbed[:, :, :3]
    assert torch.allclose(rotation @ rotation.transpose(1, 2), torch.eye(3).expand(200, 3, 3), atol=1e-5)
    # Largest total rotation of Rz Rx Ry with each angle <= pi/20 stays below 3 * pi/20.
    cos_angle = ((rotation.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    assert torch.arccos(cos_angle).max() <= 3 * math.pi / 20 + 1e-5


def test_hard_pose_pool_pools_worst_then_replays():
    config = HardPoseConfig(hard_images_pool_size=15)
    pool = HardPosePool(config)
    poses = torch.eye(4)[:3].expand(100, 3, 4).clone()
    poses[:, 0, 3] = torch.arange(100.0)
    psnr = torch.arange(100.0)  # pose i has PSNR i: poses 0-9 are the hardest
    assert pool.end_epoch(3, poses, psnr) is None and pool.poses is None  # too early (official epoch > 3)
    assert pool.end_epoch(4, poses, psnr) is None
    assert sorted(pool.poses[:, 0, 3].tolist()) == list(range(10))
    assert pool.end_epoch(5, poses, psnr) is None and pool.full
    replay = pool.end_epoch(6, poses, psnr, torch.Generator().manual_seed(0))
    assert replay.shape == (10, 3, 4) and set(replay[:, 0, 3].tolist()) <= set(range(10))


def test_point_mask_keeps_top_weights_of_opaque_rays():
    ray_indices = torch.tensor([0] * 10 + [1] * 10)
    weights = torch.cat([torch.linspace(0.01, 0.19, 10), torch.full((10,), 0.01)])  # ray 1 is nearly empty
    mask = hard_point_mask(weights, ray_indices, 2, ratio=0.3, min_accumulation=0.5)
    assert mask[10:].sum() == 0
    assert mask[:10].tolist() == [False] * 6 + [True] * 4  # ranks 0..3 (<= 10 * 0.3) by weight


@pytest.mark.parametrize("student_kind", KINDS)
@pytest.mark.parametrize("teacher_kind", ["hashgrid", "densegrid", "vm"])
def test_adapters_give_matching_features(student_kind, teacher_kind):
    schedule = PVDScheduleConfig()
    student, teacher = adapter_for(_field(student_kind)), adapter_for(_field(teacher_kind))
    samples = _samples()
    s, t = student.query(samples, schedule.clamp_density), teacher.query(samples, schedule.clamp_density)
    projector = FeatureProjector(student.feature_dim, teacher.feature_dim)
    assert projector(s.features).shape == t.features.shape == (11, teacher.feature_dim)
    for query in (s, t):
        assert query.density_logit.shape == query.density.shape == (11, 1) and query.rgb.shape == (11, 3)


def test_projector_maps_mismatched_features():
    projector = FeatureProjector(28, 16)
    assert projector(torch.zeros(4, 28)).shape == (4, 16)
    assert len(list(FeatureProjector(16, 16).parameters())) == 0


# --- training through nerfstudio's Trainer, from the blender teacher fixture -----------------------------------

STEPS = 30
STAGE1_END, STAGE2_END = 4, 8


def _psnr_vs_teacher_on_a_held_out_view(pipeline) -> float:
    from ng_methods.distill.teacher import render_teacher_rays

    camera = pipeline.datamanager.eval_dataset.cameras[0:1].to(pipeline.device)
    model = pipeline.model
    model.eval()
    with torch.no_grad():
        student = model.get_outputs_for_camera(camera)["rgb"]
        rays = camera.generate_rays(camera_indices=0).flatten()
        teacher = render_teacher_rays(pipeline.datamanager.teacher, rays)["rgb"].reshape(student.shape)
    model.train()
    return float(-10.0 * torch.log10(torch.mean((student - teacher) ** 2)))


def _tiny_pvd(teacher_config, output_dir):
    from method_configs.pvd import pvd_trainer_config
    from tests.training import reduce_for_cpu

    config = reduce_for_cpu(pvd_trainer_config("mlp", "pvd-al"), None, output_dir, STEPS)
    datamanager = config.pipeline.datamanager
    datamanager.data = None  # the teacher's scene
    datamanager.teacher_config = teacher_config
    datamanager.camera_res_scale_factor = 0.5
    datamanager.train_num_rays_per_batch = 256
    datamanager.poses_per_epoch = 5
    datamanager.hard_poses.hard_images_ratio = 0.2
    datamanager.hard_poses.hard_images_min_epoch = 0
    datamanager.hard_poses.hard_images_pool_size = 1
    model = config.pipeline.model
    model.schedule.stage1_end, model.schedule.stage2_end = STAGE1_END, STAGE2_END
    model.mlp.num_layers, model.mlp.width, model.mlp.skip_after = 4, 64, 1
    model.sampler.grid_resolution = 32
    model.sampler.render_step_size = 0.04
    model.sampler.occ_warmup_steps = 8
    model.sampler.occ_update_every = 8
    # The hard-ray pool fills on the last step (25 hard rays a stage-3 step), so replayed rays, which are hard by
    # construction, do not inflate the loss curve checked below (replay itself: test_replayed_rays_join_batch).
    model.active.hard_rays_pool_size = 25 * (STEPS - STAGE2_END)
    config.optimizers["student"]["optimizer"].lr = 5e-3  # few steps: faster than the official 1e-3
    model.eval_num_rays_per_chunk = 4096
    return config


@pytest.mark.slow
def test_pvd_al_trains_evaluates_and_renders(blender_teacher_config, tmp_path, monkeypatch, ffmpeg_on_path):
    import json

    from ng_methods.distill.pvd.model import PVDModel
    from tests.training import run_cli, train

    probes = {}  # step -> student PSNR against the teacher on a fixed held-out view
    original_callbacks = PVDModel.get_training_callbacks

    def with_probe(self, attributes):
        def probe(step: int) -> None:
            if step in (STAGE2_END - 1, STEPS - 1):  # after the last stage-2 update, and after the last update
                probes[step] = _psnr_vs_teacher_on_a_held_out_view(attributes.pipeline)

        return original_callbacks(self, attributes) + [
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], probe)
        ]

    monkeypatch.setattr(PVDModel, "get_training_callbacks", with_probe)
    torch.manual_seed(0)
    losses = []
    config = _tiny_pvd(blender_teacher_config, tmp_path / "outputs")
    trainer = train(config, on_loss=losses.append)

    # Stages: features only, then + density and colour, then + rendered colour.
    assert set(losses[0]) == {"feature_distill"}
    assert set(losses[STAGE1_END]) == {"feature_distill", "density_distill", "color_distill"}
    assert set(losses[STAGE2_END]) == {"feature_distill", "density_distill", "color_distill", "rgb_distill"}
    # Stage 3 (rendered colour) brings the student closer to the teacher on a view it never trains on. Judged on a
    # fixed view: per-step losses are too noisy to compare (every step renders another random pose).
    assert probes[STEPS - 1] > probes[STAGE2_END - 1] + 1.0, probes

    # Active learning ran: the hard-ray pool filled, the hard-pose pool replays the worst poses.
    pipeline = trainer.pipeline
    assert pipeline.model.ray_pool.full
    assert pipeline.datamanager.pose_pool.full and pipeline.datamanager.epoch >= 4

    from nerfstudio.utils import eval_utils

    # Checkpoint round trip under torch's safe loading: the reloaded student renders what the trained one does.
    config_path = config.get_base_dir() / "config.yml"
    _, loaded, _, _ = eval_utils.eval_setup(config_path, test_mode="test")
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    pipeline.model.eval()
    with torch.no_grad():
        trained_rgb = pipeline.model.get_outputs_for_camera(camera)["rgb"]
        loaded_rgb = loaded.model.get_outputs_for_camera(camera)["rgb"]
    assert torch.allclose(trained_rgb, loaded_rgb, atol=1e-5)

    metrics_path = tmp_path / "eval.json"
    result = run_cli(["ns-eval", "--load-config", str(config_path), "--output-path", str(metrics_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(metrics_path.read_text())["results"]
    assert results["psnr"] > 5.0 and results["fps"] > 0

    renders = tmp_path / "renders"
    result = run_cli(["ns-render", "dataset", "--load-config", str(config_path), "--output-path", str(renders),
                      "--split", "test", "--rendered-output-names", "rgb"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(renders.rglob("*.jpg")) + list(renders.rglob("*.png"))) == 2


def test_unqueryable_teacher_warns_once_and_distils_rgb_only():
    from types import SimpleNamespace

    from ng_methods.distill.pvd.active_learning import ActiveLearningConfig
    from ng_methods.distill.pvd.adapters import teacher_adapter_or_warn
    from ng_methods.distill.pvd.losses import distillation_losses

    with pytest.warns(UserWarning, match="distilling rendered colours only") as record:
        assert teacher_adapter_or_warn(SimpleNamespace(field=torch.nn.Linear(3, 3))) is None
    assert len(record) == 1
    rendered = SimpleNamespace(query=None)
    pvd = SimpleNamespace(teacher=rendered, student_rgb=torch.ones(4, 3), teacher_rgb=torch.zeros(4, 3))
    losses = distillation_losses(PVDScheduleConfig(), ActiveLearningConfig(), 1, True, pvd, FeatureProjector(1, 1),
                                 None)
    assert set(losses) == {"rgb_distill"} and losses["rgb_distill"].item() == pytest.approx(math.sqrt(12))
