"""What the command-line tools need from a loaded run: its SDF model, bounds, cameras, masks and ``scale_mat``.

Works on any nerfstudio pipeline whose datamanager has a ``dataparser`` (vanilla, parallel and full-image
datamanagers all do); masks come from the dataparser's ``metadata["fg_mask_filenames"]`` (one per image, same
order), ``scale_mat`` from ``metadata["scale_mat"]`` (the ``neus-data`` dataparser provides both).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from jaxtyping import Float

from ng_methods.surfaces.protocol import SdfModel

BOUNDS_MARGIN = 1.01
"""NeuS extracts meshes in [-1.01, 1.01]^3 around its unit-sphere scene (``models/dataset.py:86-87`` @6e0a230):
the scene box is grown by this factor about its centre."""


def require_sdf_model(model: object, config_path: Path, method_name: str) -> SdfModel:
    """``model`` if it has ``sdf(positions)``, else exit with one message naming the config and the method."""
    if not isinstance(model, SdfModel):
        raise SystemExit(
            f"{config_path}: method '{method_name}' ({type(model).__name__}) has no signed distance field "
            "(no model.sdf(positions)); meshes can only be extracted from SDF methods such as neus2"
        )
    return model


def extraction_bounds(pipeline, margin: float = BOUNDS_MARGIN) -> Float[torch.Tensor, "2 3"]:
    """The run's scene box grown by ``margin`` about its centre."""
    aabb = pipeline.datamanager.train_dataparser_outputs.scene_box.aabb.detach().cpu().float()
    centre = aabb.mean(dim=0, keepdim=True)
    return centre + (aabb - centre) * margin


@dataclass
class SceneViews:
    """Cameras of one split with their foreground masks (``None`` where the dataparser has none)."""

    cameras: object
    """nerfstudio ``Cameras`` [n]."""
    mask_filenames: Optional[List[Path]]
    """One mask file per camera, or None."""
    scale_mat: Optional[np.ndarray]
    """4x4 map from the scene to world coordinates, or None."""


def scene_views(pipeline, split: str) -> SceneViews:
    """The ``split`` ("train" or "test") cameras, mask files and ``scale_mat`` of a loaded run."""
    outputs = pipeline.datamanager.dataparser.get_dataparser_outputs(split=split)
    metadata = outputs.metadata or {}
    masks = metadata.get("fg_mask_filenames")
    if masks is None and outputs.mask_filenames is not None:
        masks = outputs.mask_filenames
    scale_mat = metadata.get("scale_mat")
    return SceneViews(
        cameras=outputs.cameras,
        mask_filenames=[Path(p) for p in masks] if masks is not None else None,
        scale_mat=None if scale_mat is None else np.asarray(scale_mat, dtype=np.float64),
    )


def load_mask(path: Path) -> np.ndarray:
    """A mask image as an array ([h, w] or [h, w, c]); exits naming the file if it is missing or unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except FileNotFoundError:
        raise SystemExit(f"{path}: mask file not found") from None
    except OSError as error:
        raise SystemExit(f"{path}: not a readable image ({error})") from error


def mask_intrinsics(cameras, index: int, mask_shape) -> torch.Tensor:
    """(fx, fy, cx, cy) of camera ``index`` rescaled from its image size to the mask's pixel grid."""
    height, width = mask_shape[:2]
    scale_x = width / float(cameras.width[index])
    scale_y = height / float(cameras.height[index])
    return torch.tensor(
        [
            float(cameras.fx[index]) * scale_x,
            float(cameras.fy[index]) * scale_y,
            float(cameras.cx[index]) * scale_x,
            float(cameras.cy[index]) * scale_y,
        ],
        dtype=torch.float64,
    )
