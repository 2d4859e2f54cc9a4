"""Teacher loading and rendering, its errors, and the TeacherDataManager's batches (issue 12, part 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from ng_methods.distill.datamanager import TeacherDataManagerConfig
from ng_methods.distill.teacher import TeacherConfigError, load_teacher, read_teacher_config, render_teacher_rays

NUM_RAYS = 64


@pytest.fixture(scope="module")
def blender_teacher(blender_teacher_config):
    return load_teacher(blender_teacher_config, "cpu")


def test_teacher_is_frozen_and_matches_its_own_camera_rendering(blender_teacher, blender_teacher_config):
    teacher = blender_teacher
    assert teacher.config_path == Path(blender_teacher_config)
    assert teacher.config.method_name == "ngpc-hashgrid"
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
    camera = teacher.pipeline.datamanager.train_dataparser_outputs.cameras[:1]
    rays = camera.generate_rays(camera_indices=0)[40:56, 38:50]  # a 16x12 patch through the object
    expected = teacher.model.get_outputs_for_camera_ray_bundle(rays)
    rendered = render_teacher_rays(teacher, rays.flatten(), chunk_size=37)  # chunks split the patch unevenly
    for name, channels in (("rgb", 3), ("accumulation", 1), ("depth", 1)):
        assert rendered[name].shape == (16 * 12, channels)
        torch.testing.assert_close(rendered[name], expected[name].reshape(-1, channels), atol=1e-5, rtol=1e-5)
    assert rendered["accumulation"].max() > 0.1  # the patch sees the object


def _resaved(config_path: Path, tmp_path: Path, **changes) -> Path:
    config = read_teacher_config(config_path)
    config.output_dir = tmp_path / "resaved"
    for dotted, value in changes.items():
        target = config
        *parents, leaf = dotted.split(".")
        for name in parents:
            target = getattr(target, name)
        setattr(target, leaf, value)
    config.save_config()
    return config.get_base_dir() / "config.yml"


def test_errors_name_the_file_and_the_problem(blender_teacher_config, tmp_path):
    missing = tmp_path / "nope" / "config.yml"
    with pytest.raises(TeacherConfigError, match="does not exist") as error:
        load_teacher(missing, "cpu")
    assert str(missing) in str(error.value)

    not_a_config = tmp_path / "other.yml"
    not_a_config.write_text(yaml.dump({"method_name": "nerfacto"}))
    with pytest.raises(TeacherConfigError, match="not a nerfstudio training config") as error:
        load_teacher(not_a_config, "cpu")
    assert str(not_a_config) in str(error.value)

    without_checkpoint = _resaved(blender_teacher_config, tmp_path)
    with pytest.raises(TeacherConfigError, match="no checkpoint") as error:
        load_teacher(without_checkpoint, "cpu")
    assert str(without_checkpoint) in str(error.value)

    gone = tmp_path / "gone"
    without_data = _resaved(blender_teacher_config, tmp_path / "b", **{
        "pipeline.datamanager.data": gone, "pipeline.datamanager.dataparser.data": gone})
    with pytest.raises(TeacherConfigError, match="data folder") as error:
        load_teacher(without_data, "cpu")
    assert str(without_data) in str(error.value) and str(gone) in str(error.value)


def test_a_model_that_cannot_render_rays_is_refused(blender_teacher_config, tmp_path, monkeypatch):
    from ng_methods.ngpc.model import NGPCModel

    def cameras_only(self, ray_bundle):
        raise TypeError("expected Cameras")  # what a Gaussian-splat model does with a RayBundle

    monkeypatch.setattr(NGPCModel, "get_outputs", cameras_only)
    with pytest.raises(TeacherConfigError, match="cannot render a RayBundle"):
        load_teacher(blender_teacher_config, "cpu")


def test_moved_outputs_still_load(blender_teacher_config, tmp_path):
    """The checkpoint is looked up next to config.yml, so a copied output folder loads without its old path."""
    source = Path(blender_teacher_config).parent
    moved = tmp_path / "moved"
    shutil.copytree(source, moved)
    teacher = load_teacher(moved / "config.yml", "cpu")
    assert teacher.config_path == moved / "config.yml"


def _datamanager(config_path: Path, **overrides):
    config = TeacherDataManagerConfig(teacher_config=config_path, train_num_rays_per_batch=NUM_RAYS, **overrides)
    return config.setup(device="cpu", test_mode="val")


def test_datamanager_serves_real_and_novel_rays_with_teacher_targets(blender_teacher_config):
    datamanager = _datamanager(blender_teacher_config, novel_pose_fraction=0.25, novel_cameras_per_batch=2)
    assert datamanager.config.data is not None  # the teacher's scene, found through its config
    assert not any(key.startswith("_teacher") for key in datamanager.state_dict())  # not saved with the student
    ray_bundle, batch = datamanager.next_train(0)
    assert ray_bundle.shape == (NUM_RAYS,)
    assert batch["image"].shape == batch["teacher_rgb"].shape == (NUM_RAYS, 3)
    assert batch["teacher_accumulation"].shape == batch["teacher_depth"].shape == (NUM_RAYS, 1)
    assert batch["is_novel"].dtype == torch.bool and int(batch["is_novel"].sum()) == NUM_RAYS // 4
    assert not batch["is_novel"][: NUM_RAYS - NUM_RAYS // 4].any()
    # The targets are the teacher's renders of exactly the returned rays.
    again = render_teacher_rays(datamanager.teacher, ray_bundle)
    torch.testing.assert_close(batch["teacher_rgb"], again["rgb"])
    torch.testing.assert_close(batch["teacher_depth"], again["depth"])
    torch.testing.assert_close(batch["image"], again["rgb"])
    # Novel rays start at novel camera centres, which are no training camera's.
    train_centres = datamanager.train_dataset.cameras.camera_to_worlds[:, :, 3]
    novel_origins = ray_bundle.origins[batch["is_novel"]]
    assert torch.cdist(novel_origins, train_centres).min() > 1e-3
    assert (ray_bundle.camera_indices < len(datamanager.train_dataset)).all()


def test_datamanager_is_deterministic_and_can_use_ground_truth_for_real_rays(blender_teacher_config):
    teacher_targets = _datamanager(blender_teacher_config, novel_pose_fraction=0.5, seed=7)
    ground_truth = _datamanager(blender_teacher_config, novel_pose_fraction=0.5, seed=7,
                                real_ray_targets="ground_truth")
    bundle_a, batch_a = teacher_targets.next_train(0)
    bundle_b, batch_b = ground_truth.next_train(0)
    torch.testing.assert_close(bundle_a.origins, bundle_b.origins)
    torch.testing.assert_close(bundle_a.directions, bundle_b.directions)
    real, novel = ~batch_b["is_novel"], batch_b["is_novel"]
    torch.testing.assert_close(batch_b["image"][novel], batch_a["image"][novel])
    torch.testing.assert_close(batch_b["teacher_rgb"], batch_a["teacher_rgb"])
    # Real targets are photo pixels (RGBA composited on white), not the 40-step teacher's blurry renders.
    photos = torch.stack([ground_truth.train_dataset[i]["image"] for i in range(len(ground_truth.train_dataset))])
    pixels = photos.reshape(-1, 3)
    # (within uint8 rounding: the dataloader's cached copy and a fresh read may composite at different precisions)
    assert torch.cdist(batch_b["image"][real], pixels).min(dim=1).values.max() < 2e-3
    assert not torch.allclose(batch_b["image"][real], batch_a["image"][real])
    other_seed = _datamanager(blender_teacher_config, novel_pose_fraction=0.5, seed=8).next_train(0)[0]
    assert not torch.allclose(other_seed.origins, bundle_a.origins)


def test_forward_facing_teacher_gets_forward_facing_novel_rays(llff_teacher_config):
    datamanager = _datamanager(llff_teacher_config, novel_pose_fraction=1.0)
    ray_bundle, batch = datamanager.next_train(0)
    assert batch["is_novel"].all() and ray_bundle.shape == (NUM_RAYS,)
    train_c2w = datamanager.train_dataset.cameras.camera_to_worlds
    mean_forward = torch.nn.functional.normalize(-train_c2w[:, :, 2].mean(0), dim=0)
    assert (ray_bundle.directions @ mean_forward).min() > 0.5  # looking into the scene, like the captures
    assert torch.isfinite(batch["image"]).all()


def test_datamanager_without_a_teacher_is_refused():
    with pytest.raises(TeacherConfigError, match="teacher-config"):
        TeacherDataManagerConfig().setup(device="cpu")
