"""``splatfacto-wild`` trains on CPU through nerfstudio's Trainer on a tiny photo collection; the tools load it."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.viewer.utils import parse_object
from nerfstudio.viewer.viewer_elements import ViewerElement

from method_configs.wild import splatfacto_wild
from ng_methods.splatfacto_wild.eval_protocol import left_columns
from ng_methods.splatfacto_wild.strategy import WildStrategy
from tests.conftest import DATA_DIR
from tests.methods.splat_training import reduce_splat_for_cpu
from tests.training import run_ns_export, train, train_and_check

STEPS = 30


def _copy_wild_tiny(target: Path) -> Path:
    """8 statue-of-liberty photos at 100x150, copied so derived files stay out of the repo."""
    shutil.copytree(DATA_DIR / "wild-tiny", target)
    return target


@pytest.fixture
def wild_tiny(tmp_path: Path) -> Path:
    return _copy_wild_tiny(tmp_path / "wild-tiny")


def _config(data: Path, out: Path, steps: int = STEPS, num_gaussians: int = 300):
    config = reduce_splat_for_cpu(copy.deepcopy(splatfacto_wild.config), data, out, steps, num_gaussians,
                                  blender=False)
    dataparser = config.pipeline.datamanager.dataparser
    dataparser.cache_dir = out / "llff-cache"
    dataparser.holdout_every = 4  # 6 training and 2 test photos (ns-render interpolate needs two cameras)
    config.pipeline.datamanager.points3d_file = None  # wild-tiny has no COLMAP points; CPU runs use random init
    model = config.pipeline.model
    model.random_scale = 3.0  # the tiny cameras are 3.8-11 units from the origin; keep splats small on screen
    model.sh_degree_interval = 10  # the Gaussian SH degree grows every 10 steps, the background's every 5
    model.start_robust_mask_at = 20  # exercise the robust mask in the last third of training
    model.robust_mask_reset_interval = 10
    model.eval_appearance_steps = 3
    return config


@pytest.fixture(scope="module")
def trained_pipeline(tmp_path_factory):
    """One short training run shared by the rendering checks (they switch the model to eval mode)."""
    root = tmp_path_factory.mktemp("wild")
    return train(_config(_copy_wild_tiny(root / "data"), root / "outputs", steps=10)).pipeline


@pytest.mark.slow
def test_trains_evaluates_renders_and_exports(wild_tiny, tmp_path, ffmpeg_on_path):
    seen = []
    config = _config(wild_tiny, tmp_path / "outputs")
    trainer, config_path = train_and_check(
        config, _config(wild_tiny, tmp_path / "fresh"), on_loss=lambda losses: seen.append(losses)
    )
    assert any("alpha_loss" in losses for losses in seen)
    model = trainer.pipeline.model
    assert model.robust_mask_state.max_loss > 0.0  # the robust mask ran (from step 20)
    assert model.sh_degree_to_use() == 2 and model.background_sh_degree_to_use() == 4  # official bg degree 4

    ply = tmp_path / "export"
    result = run_ns_export(["gaussian-splat", "--load-config", str(config_path), "--output-dir", str(ply)])
    assert result.returncode == 0, result.stderr[-3000:]
    header = (ply / "splat.ply").read_bytes()[:3000]
    assert b"property float f_dc_0" in header and b"property float f_rest_44" in header
    count = int(header.split(b"element vertex ")[1].split(b"\n")[0])
    assert 0 < count <= model.num_points


@pytest.mark.slow
def test_appearance_embeddings_change_the_rendering(trained_pipeline):
    pipeline = trained_pipeline
    model = pipeline.model.eval()
    camera = pipeline.datamanager.train_dataset.cameras[0:1].to(model.device)
    weights = model.appearance_embeds.weight.detach()
    with torch.no_grad():
        first = model.render_with_embedding(camera, weights[0])["rgb"]
        second = model.render_with_embedding(camera, weights[1])["rgb"]
        # the viewer sliders select and blend embeddings for cameras that are not training images
        model.viewer_appearance_image.value = 0
        from_slider = model.get_outputs_for_camera(camera)["rgb"]
        model.viewer_blend_image.value, model.viewer_blend_weight.value = 1, 1.0
        blended_fully = model.get_outputs_for_camera(camera)["rgb"]
        # the viewer tags its cameras with the last clicked training image; the sliders must still win
        camera.metadata = {"cam_idx": 0}
        tagged = model.get_outputs_for_camera(camera)["rgb"]
        camera.metadata = None
    model.viewer_appearance_image.value, model.viewer_blend_image.value, model.viewer_blend_weight.value = -1, -1, 0.0
    assert (first - second).abs().mean() > 1e-3
    torch.testing.assert_close(from_slider, first)
    torch.testing.assert_close(blended_fully, second)
    torch.testing.assert_close(tagged, second)
    # the viewer finds the sliders as custom elements of the pipeline
    names = {element.name for _, element in parse_object(pipeline, ViewerElement, "Custom Elements")}
    assert {"Appearance of training image (-1 = mean)", "Blend weight"} <= names


@pytest.mark.slow
def test_eval_scores_only_the_right_half_after_fitting_on_the_left(trained_pipeline):
    pipeline = trained_pipeline
    model = pipeline.model.eval()
    camera, batch = pipeline.datamanager.fixed_indices_eval_dataloader[0]
    image = batch["image"].float() / 255.0 if batch["image"].dtype == torch.uint8 else batch["image"].clone()
    left = left_columns(image.shape[1])

    def metrics_for(gt: torch.Tensor, fit_steps: int):
        model.config.eval_appearance_steps = fit_steps
        outputs = model.get_outputs_for_camera(camera)
        return model.get_image_metrics_and_images(outputs, {**batch, "image": gt})[0]

    corrupted_left = image.clone()
    corrupted_left[:, :left] = torch.rand_like(corrupted_left[:, :left])
    corrupted_right = image.clone()
    corrupted_right[:, left:] = torch.rand_like(corrupted_right[:, left:])

    # Without the fit the embedding is the mean, so the left half of the ground truth cannot matter at all...
    reference = metrics_for(image, 0)
    assert metrics_for(corrupted_left, 0)["psnr"] == pytest.approx(reference["psnr"], abs=1e-6)
    assert metrics_for(corrupted_right, 0)["psnr"] != pytest.approx(reference["psnr"], abs=0.1)
    # ...with it, the left half only reaches the metrics through the fitted embedding.
    fitted, fitted_to_noise = metrics_for(image, 3), metrics_for(corrupted_left, 3)
    assert fitted["appearance_fit_loss"] < fitted_to_noise["appearance_fit_loss"]
    assert fitted["psnr"] != pytest.approx(fitted_to_noise["psnr"], abs=1e-6)


@pytest.mark.slow
def test_densification_and_culling_after_split_stop_run_on_cpu(wild_tiny, tmp_path, monkeypatch):
    """Growth while refining, culling after splitting stops, and the resolution schedule, through the trainer."""
    culled_at = []
    original_cull = WildStrategy.cull

    def recording_cull(self, params, optimizers, state):
        culled_at.append(len(params["means"]))
        return original_cull(self, params, optimizers, state)

    monkeypatch.setattr(WildStrategy, "cull", recording_cull)
    config = _config(wild_tiny, tmp_path / "outputs", steps=31, num_gaussians=200)
    model = config.pipeline.model
    model.num_downscales = 1
    model.resolution_schedule = 10  # half resolution for steps 0-9
    model.warmup_length = 5
    model.refine_every = 10  # refinement at step 20 (after the pause of #images + refine_every = 16 steps)
    model.stop_split_at = 30  # so step 30 is after splitting stopped: only the extra culling runs
    model.densify_grad_thresh = 1e-9  # every visible Gaussian grows at step 20
    model.cull_alpha_thresh = 0.01
    model.reset_alpha_every = 1000
    trainer = train(config)
    model = trainer.pipeline.model
    assert culled_at and culled_at[0] > 200  # grew at step 20, then the post-split culling ran at step 30
    assert model.last_size == (75, 50)  # full resolution (half of 100x150 by camera_res_scale_factor) at the end
    assert (torch.sigmoid(model.gauss_params["opacities"]) >= 0.01).all()
    for name, optimizer in trainer.optimizers.optimizers.items():
        if name in model.gauss_params:
            assert optimizer.param_groups[0]["params"][0] is model.gauss_params[name]
    assert model.gauss_params["appearance_features"].shape == (model.num_points, 72)


@pytest.mark.slow
def test_official_protocol_trains_test_left_halves_and_scores_right_halves(wild_tiny, tmp_path):
    """``train_on_test_left_halves``: test photos get trained embeddings; eval renders with them, no post-hoc fit."""
    config = _config(wild_tiny, tmp_path / "outputs", steps=10)
    config.pipeline.datamanager.train_on_test_left_halves = True
    pipeline = train(config).pipeline
    model = pipeline.model.eval()
    assert model.appearance_embeds.weight.shape[0] == 8  # 6 training photos + 2 test photos
    camera, batch = pipeline.datamanager.fixed_indices_eval_dataloader[1]
    image = batch["image"].float() / 255.0 if batch["image"].dtype == torch.uint8 else batch["image"].clone()
    left = left_columns(image.shape[1])
    with torch.no_grad():
        outputs = model.get_outputs_for_camera(camera)
        expected = model.render_with_embedding(camera, model.appearance_embeds.weight[7])["rgb"]
    torch.testing.assert_close(outputs["rgb"], expected)
    metrics = model.get_image_metrics_and_images(outputs, batch)[0]
    corrupted = image.clone()
    corrupted[:, :left] = torch.rand_like(corrupted[:, :left])
    assert "appearance_fit_loss" not in metrics
    assert model.get_image_metrics_and_images(outputs, {**batch, "image": corrupted})[0]["psnr"] == pytest.approx(
        metrics["psnr"], abs=1e-6
    )


@pytest.mark.slow
def test_trains_on_phototourism_from_colmap_points(tmp_path):
    """ng-phototourism-data + the official protocol: Gaussians start at the COLMAP points (no random init)."""
    from ng_methods.data.phototourism import PhototourismDataParserConfig
    from tests.data_tests.colmap_writer import write_points
    from tests.data_tests.test_phototourism import make_scene

    data = make_scene(tmp_path / "scene")
    rng = np.random.default_rng(0)  # 30 points inside the ring of cameras (none at a camera centre)
    write_points(data / "dense/sparse/points3D.bin", rng.uniform(-1, 1, (30, 3)), rng.integers(0, 256, (30, 3)))
    config = _config(data, tmp_path / "outputs", steps=5)
    config.pipeline.datamanager.dataparser = PhototourismDataParserConfig(data=data)
    config.pipeline.datamanager.train_on_test_left_halves = True
    config.pipeline.datamanager.camera_res_scale_factor = 1.0
    config.pipeline.model.random_init = False
    seeds = config.pipeline.datamanager.dataparser.setup().get_dataparser_outputs("train").metadata
    model = train(config).pipeline.model
    assert model.appearance_embeds.weight.shape[0] == 8
    assert model.num_points == 30  # no densification in 5 steps: the 30 COLMAP points
    torch.testing.assert_close(model.gauss_params["means"].detach().cpu(), seeds["points3D_xyz"], atol=0.05, rtol=0)
