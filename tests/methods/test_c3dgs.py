"""C3DGS trains on CPU through nerfstudio's Trainer; masked Gaussians go; the compact file renders the same."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from method_configs.c3dgs import c3dgs
from ng_methods.c3dgs.cli import CompactToPly, ExportCompact
from ng_methods.c3dgs.compact import load_compact
from ng_methods.c3dgs.mask import kept_gaussians
from ng_methods.splat.extent import camera_extent
from ng_methods.splat.strategy_3dgs import ThreeDGSStrategy
from tests.c3dgs.test_compact import MAX_PIXEL_ERROR, MIN_PSNR_DB, read_ply
from tests.methods.splat_training import reduce_splat_for_cpu
from tests.training import run_ns_export, train_and_check

STEPS = 40
NUM_GAUSSIANS = 1500
# A standard 3DGS .ply stores 62 float32 per Gaussian (centre, normal, 48 SH, opacity, scale, rotation).
FLOATS_PER_3DGS_GAUSSIAN = 62


def _config(data, out, steps=STEPS):
    config = reduce_splat_for_cpu(copy.deepcopy(c3dgs.config), data, out, steps, num_gaussians=NUM_GAUSSIANS)
    model = config.pipeline.model
    model.hash_log2_size = 12  # small table: CPU speed
    model.grid_backend = "torch"
    model.rvq_fraction = 10 / STEPS  # R-VQ for the last 10 steps (1000 of 30000 in the real recipe)
    model.stop_split_at = 20  # "densification" ends at 20: masked Gaussians are removed at 20, 30 and the end
    model.mask_prune_every = 10
    # A fast mask so that Gaussians no view needs (out of every frustum) are masked within a few dozen steps.
    config.optimizers["mask_logits"]["optimizer"].lr = 0.3
    return config


@pytest.mark.slow
def test_trains_compresses_and_exports(tiny_lego, tmp_path, ffmpeg_on_path):
    config = _config(tiny_lego, tmp_path / "outputs")
    trainer, config_path = train_and_check(config, _config(tiny_lego, tmp_path / "fresh"))
    model = trainer.pipeline.model
    pipeline = trainer.pipeline

    # the official recipe: 3DGS densification on the camera extent, which also scales the centres' learning rate
    extent = camera_extent(pipeline.datamanager.train_dataset.cameras.camera_to_worlds)
    assert isinstance(model.strategy, ThreeDGSStrategy) and model.strategy_state["scene_scale"] == extent
    means_group = trainer.optimizers.optimizers["means"].param_groups[0]
    assert means_group["initial_lr"] == pytest.approx(1.6e-4 * extent)

    # R-VQ ran in the final steps; masked Gaussians were removed; storage was reported
    assert model.rvq_enabled and model.rvq_start_step == STEPS - 10
    assert 0 < model.num_points < NUM_GAUSSIANS
    assert kept_gaussians(model.gauss_params["mask_logits"].squeeze(-1), model.config.mask_threshold).all()
    uncompressed = model.num_points * FLOATS_PER_3DGS_GAUSSIAN * 4
    assert model.final_storage_bytes is not None and model.final_storage_bytes < uncompressed

    # compact export as ng-c3dgs-export does it (in-process: the CPU budget), with the decoded file evaluated on the
    # test split (the paper's +PP protocol); then the loaded file renders like the trained model
    compact, metrics_path = tmp_path / "scene.ngc", tmp_path / "pp.json"
    ExportCompact(load_config=config_path, output_path=compact, hash_prune_threshold=0.0,
                  eval_output_path=metrics_path).main()
    evaluated = json.loads(metrics_path.read_text())
    assert evaluated["num_gaussians"] == model.num_points and evaluated["compact_mb"] > 0
    assert 5 < evaluated["results"]["psnr"] < 60
    loaded = load_compact(compact)
    assert loaded.num_points == model.num_points
    model.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    with torch.no_grad():
        reference = model.get_outputs_for_camera(camera)["rgb"]
        decoded = loaded.get_outputs_for_camera(camera)["rgb"]
    error = (decoded - reference).abs()
    psnr = -10 * torch.log10(error.pow(2).mean())
    assert error.max() <= MAX_PIXEL_ERROR and psnr >= MIN_PSNR_DB, (float(error.max()), float(psnr))

    # .ply from the converter and from ns-export gaussian-splat: same layout and Gaussians
    ply = tmp_path / "converted.ply"
    CompactToPly(input_path=compact, output_path=ply).main()
    names, values = read_ply(ply)
    assert values.shape == (model.num_points, FLOATS_PER_3DGS_GAUSSIAN)
    export_dir = tmp_path / "export"
    result = run_ns_export(["gaussian-splat", "--load-config", str(config_path), "--output-dir", str(export_dir)])
    assert result.returncode == 0, result.stderr[-3000:]
    exported_names, exported = read_ply(export_dir / "splat.ply")
    assert exported_names == names and exported.shape[0] <= model.num_points


def test_console_scripts_and_methods_are_registered():
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts["ng-c3dgs-export"] == "ng_methods.c3dgs.cli:export_entrypoint"
    assert scripts["ng-c3dgs-to-ply"] == "ng_methods.c3dgs.cli:to_ply_entrypoint"
    methods = {ep.name for ep in entry_points(group="nerfstudio.method_configs")}
    assert {"c3dgs", "c3dgs-synthetic"} <= methods


def test_cli_parses_the_documented_arguments():
    import tyro

    parsed = tyro.cli(CompactToPly, args=["scene.ngc", "--output-path", "out.ply"])
    assert str(parsed.input_path) == "scene.ngc" and str(parsed.output_path) == "out.ply"
    parsed = tyro.cli(ExportCompact, args=["--load-config", "run/config.yml", "--hash-prune-threshold", "0"])
    assert parsed.hash_prune_threshold == 0.0 and str(parsed.output_path) == "c3dgs.ngc"
