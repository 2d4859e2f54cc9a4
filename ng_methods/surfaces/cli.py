"""Console scripts ``ng-extract-mesh`` (SDF run -> coloured ``.ply`` mesh) and ``ng-eval-geometry`` (mask IoU on the
eval split; DTU-protocol Chamfer and normal consistency against reference points).

Both load a trained run from its ``config.yml`` with nerfstudio's ``eval_setup``. ``main_extract_mesh(args)`` /
``main_eval_geometry(args)`` take an argument list (tests call them directly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE

from ng_methods.surfaces.marching_cubes import DEFAULT_CHUNK


def _load_pipeline(config_path: Path, test_mode: str):
    from nerfstudio.utils.eval_utils import eval_setup

    import ng_methods  # noqa: F401  (checkpoint loading on torch >= 2.6)

    if not Path(config_path).is_file():
        raise SystemExit(f"{config_path}: no such run config (expected the config.yml of a trained run)")
    config, pipeline, _, _ = eval_setup(config_path, test_mode=test_mode)
    return config, pipeline


@dataclass
class ExtractMesh:
    """Extract the zero level set of a trained SDF model as a binary ``.ply`` with vertex colours."""

    load_config: Path
    """The run's ``config.yml`` (as for ``ns-export``)."""
    resolution: int = 512
    """Lattice points per axis (NeuS ``validate_mesh(resolution=512)``, ``exp_runner.py:394``; NeuS2
    ``--marching_cubes_res 512``, ``scripts/run.py:53``)."""
    output_path: Path = Path("mesh.ply")
    """Where to write the mesh."""
    chunk: int = DEFAULT_CHUNK
    """SDF / colour queries per model call (64^3, NeuS's block)."""
    level: float = 0.0
    """Iso-value of the surface (NeuS ``--mcube_threshold`` 0)."""
    world_coordinates: bool = True
    """Map the mesh to world coordinates with the dataparser's scale_mat, as NeuS writes its evaluation meshes
    (exp_runner.py:336-337). Without a scale_mat the mesh stays in scene coordinates (with a warning)."""
    cull_with_masks: bool = False
    """Cull with the foreground masks of every camera (train and eval splits) as the DTU evaluation of 2DGS does."""
    mask_dilation: Optional[int] = None
    """Disk radius (mask pixels) of the mask dilation; None scales the official 24 px at 1600 px width."""
    colors: bool = True
    """Colour the vertices with model.surface_colors (skipped with a warning if the model has none)."""

    def main(self) -> None:
        from ng_methods.surfaces.marching_cubes import extract_mesh
        from ng_methods.surfaces.mesh_io import write_ply
        from ng_methods.surfaces.scene_views import extraction_bounds, require_sdf_model

        config, pipeline = _load_pipeline(self.load_config, "inference")
        model = require_sdf_model(pipeline.model, self.load_config, config.method_name)
        bounds = extraction_bounds(pipeline)
        CONSOLE.print(f"Marching cubes at {self.resolution}^3 in {bounds.tolist()}")
        vertices, faces = extract_mesh(model.sdf, bounds, self.resolution, self.chunk, self.level, model.device)
        vertices, faces = vertices.numpy(), faces.numpy()
        if self.cull_with_masks:
            vertices, faces = self.cull(pipeline, vertices, faces)
        colors = self._colors(model, vertices)
        if self.world_coordinates:
            vertices, faces = self._to_world(pipeline, vertices, faces)
        write_ply(self.output_path, vertices, faces, colors)
        CONSOLE.print(f"Wrote {self.output_path}: {len(vertices)} vertices, {len(faces)} faces")

    def cull(self, pipeline, vertices: np.ndarray, faces: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The DTU evaluation's mask culling with every view of the run (train and eval splits), as 2DGS does."""
        from ng_methods.surfaces.culling import cull_mesh, dtu_dilation_radius, vertices_inside_masks
        from ng_methods.surfaces.scene_views import load_mask, mask_intrinsics, scene_views

        poses, intrinsics, masks, seen = [], [], [], set()
        for split in ("train", "test"):  # 2DGS culls with every image of the scan (evaluate_single_scene.py:22-37)
            views = scene_views(pipeline, split)
            if views.mask_filenames is None:
                raise SystemExit(f"{self.load_config}: --cull-with-masks needs foreground masks, but the {split} "
                                 "split of this run's dataparser has none (metadata['fg_mask_filenames'])")
            for index, path in enumerate(views.mask_filenames):
                if path in seen:  # a view in both splits votes once
                    continue
                seen.add(path)
                masks.append(load_mask(path))
                poses.append(views.cameras.camera_to_worlds[index].detach().cpu())
                intrinsics.append(mask_intrinsics(views.cameras, index, masks[-1].shape))
        radius = self.mask_dilation if self.mask_dilation is not None else dtu_dilation_radius(masks[0].shape[1])
        keep = vertices_inside_masks(torch.from_numpy(vertices), torch.stack(poses), torch.stack(intrinsics), masks,
                                     radius)
        culled = cull_mesh(vertices, faces, keep.numpy())
        CONSOLE.print(f"Mask culling ({len(masks)} views, dilation {radius} px) kept {len(culled[0])} of "
                      f"{len(vertices)} vertices")
        return culled

    def _colors(self, model, vertices: np.ndarray) -> Optional[np.ndarray]:
        from ng_methods.surfaces.mesh_io import vertex_colors

        if not self.colors:
            return None
        if not hasattr(model, "surface_colors"):
            CONSOLE.print(f"[yellow]{type(model).__name__} has no surface_colors(positions): writing no colours")
            return None
        return vertex_colors(model.surface_colors, torch.from_numpy(vertices).float(), self.chunk, model.device)

    def _to_world(self, pipeline, vertices: np.ndarray, faces: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        from ng_methods.surfaces.mesh_io import to_world
        from ng_methods.surfaces.scene_views import scene_views

        scale_mat = scene_views(pipeline, "train").scale_mat
        if scale_mat is None:
            CONSOLE.print("[yellow]The dataparser gives no metadata['scale_mat']: writing scene coordinates")
            return vertices, faces
        return to_world(vertices, faces, scale_mat)


@dataclass
class EvalGeometry:
    """Geometry metrics of a trained run: mask IoU of the rendered accumulation on the eval split, and, given
    reference points, the DTU-protocol Chamfer distance (and normal consistency when the reference has normals)."""

    load_config: Path
    """The run's ``config.yml``."""
    mesh: Optional[Path] = None
    """The extracted mesh (``ng-extract-mesh``; world coordinates for DTU's millimetres)."""
    reference_points: Optional[Path] = None
    """Reference point cloud ``.ply`` (e.g. DTU ``Points/stl/stl065_total.ply``) in the mesh's coordinates."""
    output_path: Optional[Path] = None
    """Where to write the metrics (JSON); printed either way."""
    accumulation_threshold: float = 0.5
    """Pixels with accumulation above this count as foreground."""
    downsample_density: float = 0.2
    """Mesh sampling / thinning distance (DTUeval-python ``eval.py:35``; mm on DTU)."""
    max_dist: float = 20.0
    """Nearest-neighbour distances at or above this are dropped (``eval.py:37``)."""
    dtu_dataset_dir: Optional[Path] = None
    """Official DTU evaluation folder (with ``ObsMask/``): adds the observation mask and ground plane filters."""
    scan: Optional[int] = None
    """DTU scan number (with ``--dtu-dataset-dir``)."""

    def main(self) -> Dict[str, object]:
        config, pipeline = _load_pipeline(self.load_config, "test")
        results: Dict[str, object] = {"experiment_name": config.experiment_name, "method_name": config.method_name}
        results.update(self._mask_iou(pipeline))
        if self.reference_points is not None:
            results.update(self._chamfer())
        if self.output_path is not None:
            self.output_path.parent.mkdir(parents=True, exist_ok=True)
            self.output_path.write_text(json.dumps(results, indent=2))
        CONSOLE.print(json.dumps({k: v for k, v in results.items() if not k.endswith("per_image")}, indent=2))
        return results

    @torch.no_grad()
    def _mask_iou(self, pipeline) -> Dict[str, object]:
        from ng_methods.surfaces.geometry_metrics import accumulation_mask_iou
        from ng_methods.surfaces.scene_views import load_mask, scene_views

        views = scene_views(pipeline, "test")
        if views.mask_filenames is None:
            CONSOLE.print("[yellow]The eval split has no foreground masks: no mask IoU")
            return {}
        model, accumulations, masks = pipeline.model, [], []
        for index, path in enumerate(views.mask_filenames):
            camera = views.cameras[index : index + 1].to(model.device)
            outputs = model.get_outputs_for_camera(camera)
            if "accumulation" not in outputs:
                raise SystemExit(f"{self.load_config}: {type(model).__name__} renders no 'accumulation'")
            accumulations.append(outputs["accumulation"][..., 0].cpu().numpy())
            masks.append(_resized_mask(load_mask(path), accumulations[-1].shape))
        return accumulation_mask_iou(accumulations, masks, self.accumulation_threshold)

    def _chamfer(self) -> Dict[str, object]:
        from ng_methods.surfaces.geometry_metrics import dtu_chamfer
        from ng_methods.surfaces.mesh_io import read_ply

        if self.mesh is None:
            raise SystemExit("--reference-points needs --mesh (the mesh to compare)")
        mesh, reference = read_ply(self.mesh), read_ply(self.reference_points)
        observation = _dtu_observation(self.dtu_dataset_dir, self.scan)
        results: Dict[str, object] = dtu_chamfer(mesh["vertices"], mesh["faces"], reference["vertices"],
                                                 self.downsample_density, self.max_dist, observation=observation)
        results.update(_normal_consistency(mesh, reference))
        return results


def _resized_mask(mask: np.ndarray, shape) -> np.ndarray:
    """The mask at the rendered image's size (nearest neighbour), so downscaled evaluations compare pixelwise."""
    if mask.shape[:2] == tuple(shape):
        return mask
    from PIL import Image

    foreground = (mask[..., 0] if mask.ndim == 3 else mask) > 0
    resized = Image.fromarray(foreground.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.NEAREST)
    return np.asarray(resized)


def _dtu_observation(dataset_dir: Optional[Path], scan: Optional[int]) -> Optional[dict]:
    if dataset_dir is None:
        return None
    if scan is None:
        raise SystemExit("--dtu-dataset-dir needs --scan (the DTU scan number)")
    from ng_methods.surfaces.geometry_metrics import load_dtu_observation

    return load_dtu_observation(dataset_dir, scan)


def _normal_consistency(mesh: dict, reference: dict) -> Dict[str, float]:
    """Normal consistency of mesh vertex normals vs the reference's normals (its own, or its mesh's)."""
    import trimesh

    from ng_methods.surfaces.geometry_metrics import normal_consistency

    reference_normals = reference["normals"]
    if reference_normals is None and reference["faces"] is not None and len(reference["faces"]):
        reference_normals = trimesh.Trimesh(reference["vertices"], reference["faces"], process=False).vertex_normals
    if reference_normals is None or mesh["faces"] is None or not len(mesh["faces"]):
        return {}
    mesh_normals = trimesh.Trimesh(mesh["vertices"], mesh["faces"], process=False).vertex_normals
    return {"normal_consistency": normal_consistency(mesh["vertices"], mesh_normals, reference["vertices"],
                                                     np.asarray(reference_normals))}


def main_extract_mesh(args: Optional[List[str]] = None) -> None:
    """``ng-extract-mesh``; ``args`` replaces ``sys.argv[1:]``."""
    tyro.cli(ExtractMesh, args=args).main()


def main_eval_geometry(args: Optional[List[str]] = None) -> Dict[str, object]:
    """``ng-eval-geometry``; ``args`` replaces ``sys.argv[1:]``. Returns the metrics."""
    return tyro.cli(EvalGeometry, args=args).main()


def extract_mesh_entrypoint() -> None:
    """Console script ``ng-extract-mesh``."""
    main_extract_mesh()


def eval_geometry_entrypoint() -> None:
    """Console script ``ng-eval-geometry``."""
    main_eval_geometry()
