"""``ng-extract-mesh`` and ``ng-eval-geometry`` on runs trained through nerfstudio's Trainer (a toy sphere SDF)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from ng_methods.surfaces.cli import main_eval_geometry, main_extract_mesh
from ng_methods.surfaces.mesh_io import read_ply, write_ply
from ng_methods.surfaces.scene_views import require_sdf_model
from tests.surfaces.toy_sdf import DTU_TINY, RADIUS, ToyDensityModelConfig, ToySdfModelConfig, toy_config
from tests.training import train


@pytest.fixture(scope="module")
def toy_sdf_run(tmp_path_factory):
    torch.manual_seed(0)
    trainer = train(toy_config(ToySdfModelConfig(), tmp_path_factory.mktemp("toy-sdf")))
    return trainer.config.get_base_dir() / "config.yml"


def test_extract_mesh_in_world_coordinates_with_colours(toy_sdf_run, tmp_path):
    output = tmp_path / "mesh.ply"
    main_extract_mesh(["--load-config", str(toy_sdf_run), "--resolution", "24", "--output-path", str(output),
                       "--chunk", "1000"])
    mesh = read_ply(output)
    world = trimesh.Trimesh(mesh["vertices"], mesh["faces"], process=False)
    assert world.is_watertight and world.volume > 0
    # world = scene * scale + translation (NeuS exp_runner.py:337); the scene sphere has radius 0.5 at the origin
    cameras = np.load(str(DTU_TINY / "cameras_sphere.npz"))
    scale, translation = cameras["scale_mat_0"][0, 0], cameras["scale_mat_0"][:3, 3]
    radii = np.linalg.norm(mesh["vertices"] - translation, axis=-1) / scale
    assert np.all(np.abs(radii - RADIUS) < 2.02 / 23)
    assert mesh["colors"] is not None and np.all(mesh["colors"] == mesh["colors"][0])


def test_extract_mesh_scene_coordinates_culled_without_colours(toy_sdf_run, tmp_path):
    full, culled = tmp_path / "full.ply", tmp_path / "culled.ply"
    common = ["--load-config", str(toy_sdf_run), "--resolution", "24", "--no-world-coordinates", "--no-colors"]
    main_extract_mesh([*common, "--output-path", str(full)])
    main_extract_mesh([*common, "--output-path", str(culled), "--cull-with-masks", "--mask-dilation", "0"])
    full_mesh, culled_mesh = read_ply(full), read_ply(culled)
    assert full_mesh["colors"] is None
    assert np.all(np.abs(np.linalg.norm(full_mesh["vertices"], axis=-1) - RADIUS) < 2.02 / 23)
    # the sphere of radius 0.5 is larger than the object on some views: culling removes part, not all, of it
    assert 0 < len(culled_mesh["vertices"]) < len(full_mesh["vertices"])
    assert len(culled_mesh["faces"]) < len(full_mesh["faces"])


def test_eval_geometry_mask_iou_and_chamfer(toy_sdf_run, tmp_path):
    mesh_path, reference_path, metrics_path = tmp_path / "mesh.ply", tmp_path / "ref.ply", tmp_path / "m.json"
    main_extract_mesh(["--load-config", str(toy_sdf_run), "--resolution", "24", "--output-path", str(mesh_path)])
    mesh = read_ply(mesh_path)
    write_ply(reference_path, mesh["vertices"], mesh["faces"])  # the mesh itself as the reference (with normals)
    results = main_eval_geometry(["--load-config", str(toy_sdf_run), "--mesh", str(mesh_path),
                                  "--reference-points", str(reference_path), "--output-path", str(metrics_path),
                                  "--downsample-density", "4.0"])  # mm: a coarse sampling keeps the test fast
    assert json.loads(metrics_path.read_text()) == results
    assert len(results["mask_iou_per_image"]) == 8 and 0 < results["mask_iou"] < 1
    # the reference points are the mesh vertices: completeness within the 4 mm thinning, accuracy within the
    # vertex spacing (a 2.02 / 23 scene-unit voxel is 14 mm in world units)
    assert results["completeness"] < 4.0 and results["accuracy"] < 14.0
    assert results["chamfer"] == pytest.approx((results["accuracy"] + results["completeness"]) / 2)
    assert results["normal_consistency"] == pytest.approx(1.0)


def test_model_without_sdf_is_a_clear_error(tmp_path):
    trainer = train(toy_config(ToyDensityModelConfig(), tmp_path))
    config_path = trainer.config.get_base_dir() / "config.yml"
    with pytest.raises(SystemExit, match="method 'vanilla-nerf' \\(ToyDensityModel\\) has no signed distance field"):
        main_extract_mesh(["--load-config", str(config_path), "--resolution", "8", "--output-path",
                           str(tmp_path / "x.ply")])
    assert str(config_path) in _exit_message(lambda: require_sdf_model(object(), config_path, "vanilla-nerf"))


def _exit_message(function) -> str:
    with pytest.raises(SystemExit) as error:
        function()
    return str(error.value)


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(SystemExit, match="nowhere.yml: no such run config"):
        main_extract_mesh(["--load-config", str(tmp_path / "nowhere.yml")])
