"""End to end: a few neus2 steps on the tiny DTU scene through nerfstudio's Trainer, then ``ng-extract-mesh``."""

from __future__ import annotations


import numpy as np
import torch
import trimesh

from ng_methods.surfaces.cli import main_extract_mesh
from ng_methods.surfaces.mesh_io import read_ply
from tests.surfaces.toy_sdf import DTU_TINY
from tests.neus2.helpers import small_neus2_config
from tests.training import train

STEPS = 3


def test_neus2_run_to_coloured_world_mesh(tmp_path):
    torch.manual_seed(0)
    trainer = train(small_neus2_config(tmp_path / "outputs", STEPS))
    config_path = trainer.config.get_base_dir() / "config.yml"
    full, culled = tmp_path / "mesh.ply", tmp_path / "culled.ply"
    main_extract_mesh(["--load-config", str(config_path), "--resolution", "32", "--output-path", str(full)])
    main_extract_mesh(["--load-config", str(config_path), "--resolution", "32", "--output-path", str(culled),
                       "--cull-with-masks", "--no-colors"])

    mesh = read_ply(full)
    assert len(mesh["faces"]) > 20 and mesh["colors"] is not None and mesh["colors"].shape == mesh["vertices"].shape
    world = trimesh.Trimesh(mesh["vertices"], mesh["faces"], process=False)
    assert world.volume > 0  # outward faces (the early SDF is a closed blob inside the box)
    scale_mat = np.load(str(DTU_TINY / "cameras_sphere.npz"))["scale_mat_0"]
    scene_radius = np.linalg.norm(mesh["vertices"] - scale_mat[:3, 3], axis=-1) / scale_mat[0, 0]
    assert scene_radius.max() < np.sqrt(3) * 1.01  # inside the extraction box, in world units via scale_mat
    culled_mesh = read_ply(culled)
    assert culled_mesh["colors"] is None and len(culled_mesh["vertices"]) <= len(mesh["vertices"])
