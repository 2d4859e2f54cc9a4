"""``llff-data``: scenes described by an LLFF ``poses_bounds.npy``.

Covers LLFF forward-facing captures (``fern``: ``images_4/``, ``images_8/``) and photo collections stored in the same
format (``wild/statue-of-liberty``: ``images/`` + ``masks/``).

File layout::

    <data>/poses_bounds.npy    N x 17 float array, one row per image, rows in sorted-file-name order
    <data>/images/             full-resolution images (downscale factor 1), and/or
    <data>/images_<K>/         the same images downscaled K times (LLFF's ``minify``)
    <data>/masks[_<K>]/        optional masks (see "Masks" below)

``poses_bounds.npy`` row ``i`` (LLFF's ``load_llff_data``): ``row[:15].reshape(3, 5)`` is a 3x4 camera-to-world
matrix whose rotation columns are the camera axes [down, right, backwards], followed by a column ``(h, w, focal)``
describing the image the poses were estimated on; ``row[15:17]`` are the near/far scene depths seen by that
camera. Row ``i`` belongs to the ``i``-th image file in sorted order, as in LLFF.

Conventions chosen here (all processing uses every image, so train and eval splits share one world frame):

- **Camera axes**: converted to nerfstudio's OpenGL convention [right, up, backwards] (camera looks along -z),
  like LLFF's ``poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:]``.
- **Intrinsics**: pinhole, principal point at the image centre, ``fx = focal * w_img / w``, ``fy = focal * h_img / h``
  where ``(h, w, focal)`` is the row's hwf and ``(w_img, h_img)`` is the size of the image file actually loaded
  (read per image, so folders with mixed sizes work). The hwf is assumed to describe the same picture at another
  resolution; an image whose aspect ratio differs (cropped, or rotated by EXIF) raises a ``DataValidationError``.
  Folder names (``images_8``) are only used to choose a folder, never for intrinsics.
  What the data shows: fern's hwf is (3024, 4032, 3260.5) and its folders hold 4x and 8x downscaled copies; in the
  statue collection all 135 photos are 800x1200 (portrait) and every row's hwf is (1200, 800, 2474.3), i.e. the
  photos were resized to a common size before the poses were estimated and share one focal.
- **Orientation / centring** (``orientation_method="up"``, ``recenter=True``, ``center_method="focus"``): nerfstudio's
  ``camera_utils.auto_orient_and_center_poses``: the mean camera up vector becomes +z (nerfstudio's z-up world,
  as for ``nerfstudio-data``) and the origin is the focus of attention of the cameras (the point closest to all
  optical axes), which is inside the scene content for both forward-facing captures (fern: about 2.5 units in
  front of the cameras) and inward-looking collections (the statue). ``center_method="poses"`` puts the mean
  camera position at the origin instead (LLFF's ``recenter_poses`` translation).
- **Scale** (``bd_factor=0.75``): LLFF's: world units are multiplied by ``1 / (min_near * bd_factor)``, so the
  nearest scene depth becomes ``1 / bd_factor`` (1.33); times ``scale_factor``. Bounds are scaled the same way.
- ``dataparser_transform`` / ``dataparser_scale`` map the LLFF world frame (with OpenGL camera axes) to ours, as in
  nerfstudio (``transform_poses_to_original_space`` undoes them).
- **Scene box**: by default the axis-aligned bounding box of all camera centres and of every image's view frustum
  between its near and far bound (everything any camera sees). It is large and anisotropic for forward-facing
  scenes, which are unbounded in depth: methods should use scene contraction (e.g. nerfstudio's
  ``SceneContraction``) and the near/far metadata rather than a dense grid over the box. ``scene_scale=s`` instead
  gives nerfstudio's usual box [-s, s]^3.
- **Metadata** (``DataparserOutputs.metadata``): ``near`` / ``far`` (floats: the smallest near and largest far bound
  over all images, in output units), ``bounds`` (float32 tensor [N_split, 2], per-image near/far of this split),
  ``forward_facing`` (bool: the viewing directions agree, |mean view direction| > 0.9).
- **Splits**: LLFF's holdout: image ``i`` (sorted order) is a test image when ``i % holdout_every == 0``; ``train``
  is the rest; ``val`` and ``test`` are the holdout images; ``all`` is every image. ``holdout_every=0`` uses every
  image in every split.

Masks (``use_masks=True``, when a ``masks_<K>/`` folder for the chosen factor or a ``masks/`` folder exists): one
mask per image, same file name or same stem with ``.png``/``.jpg``. Nerfstudio's ``mask_filenames`` semantics are
1 = use the pixel (it is sampled and counts in the loss), 0 = ignore it. The statue masks are 3-channel JPEGs,
white (255) on the statue and its pedestal, black (0) on the sky; JPEG noise leaves values 1..254 (a few percent
of the sky is non-zero), and nerfstudio reads masks with ``.bool()`` and requires one channel, so the raw files
cannot be used directly. We therefore write binarised single-channel PNGs (``value >= mask_threshold * 255``,
resized to the image size first when needed) to a cache and give nerfstudio those: white = statue = used, sky =
ignored (so the sky, which changes from photo to photo and is not a surface, is not supervised). Set
``invert_masks=True`` for masks that mark pixels to ignore (e.g. transient occluders painted white).

Derived files (binarised masks, and images for a ``downscale_factor`` whose folder does not exist, made from a
finer folder whose factor divides it) are written to ``<cache_dir>/<scene>-<hash of the data path>/`` (default
root ``$NG_METHODS_CACHE/llff``, else ``$XDG_CACHE_HOME/ng_methods/llff``, else ``~/.cache/ng_methods/llff``), never
into the data directory, and are rebuilt when the source is newer. Before anything is derived, every image of the
chosen folder (or the folder a derived one is made from) and every source mask is checked to decode
(:func:`~ng_methods.data.validation.check_images_decodable`): a truncated or corrupt file raises a
``DataValidationError`` naming it.

Code layout: this module holds the config, the splits and the ``LLFF`` parser that assembles a scene;
:mod:`ng_methods.data.llff_poses` reads ``poses_bounds.npy`` and makes cameras, world frame and scene box;
:mod:`ng_methods.data.llff_images` chooses (or makes) the image folder and owns the cache of derived files;
:mod:`ng_methods.data.llff_masks` finds and binarises masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Type

import numpy as np
import torch

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.colors import get_color

from ng_methods.data.llff_images import IMAGE_EXTENSIONS, POSES_FILE, choose_image_folder
from ng_methods.data.llff_masks import find_masks
from ng_methods.data.llff_poses import (
    Intrinsics,
    intrinsics_from_hwf,
    is_forward_facing,
    load_poses_bounds,
    normalize_poses,
    scene_aabb,
    split_poses_bounds,
)
from ng_methods.data.validation import DataValidationError

__all__ = ["LLFFDataParserConfig", "LLFF", "IMAGE_EXTENSIONS", "holdout_indices"]


@dataclass
class LLFFDataParserConfig(DataParserConfig):
    """LLFF ``poses_bounds.npy`` dataparser (forward-facing captures and photo collections in that format)."""

    _target: Type = field(default_factory=lambda: LLFF)
    """target class to instantiate"""
    data: Path = Path("data/llff/fern")
    """Scene directory holding ``poses_bounds.npy`` and ``images/`` and/or ``images_<K>/`` folders."""
    downscale_factor: Optional[int] = None
    """Use the ``images_<K>`` folder for K = downscale_factor (``images`` for 1). If that folder does not exist, the
    images are made (once, in ``cache_dir``) from a finer folder whose factor divides K. None: the smallest
    available factor whose images are at most ``max_auto_resolution`` pixels on their long side (else the largest
    available factor): fern -> images_4 (1008x756), the statue -> images (800x1200)."""
    max_auto_resolution: int = 1600
    """Long-side limit used to pick a folder when ``downscale_factor`` is None (nerfstudio's limit)."""
    holdout_every: int = 8
    """LLFF holdout: image i (sorted order) is a test/val image when i % holdout_every == 0, the others are training
    images. 0 disables the holdout (every split has every image)."""
    bd_factor: Optional[float] = 0.75
    """LLFF's scaling: rescale the world so that (smallest near bound) * bd_factor = 1. None: keep the units of
    poses_bounds.npy."""
    scale_factor: float = 1.0
    """Extra factor applied to the camera positions and bounds after the bd_factor scaling."""
    recenter: bool = True
    """Translate the world so that the ``center_method`` point is the origin."""
    center_method: Literal["focus", "poses"] = "focus"
    """"focus": the focus of attention of the cameras (closest point to all optical axes, inside the scene);
    "poses": the mean camera position (LLFF's recentering)."""
    orientation_method: Literal["up", "none"] = "up"
    """"up": rotate the world so that the mean camera up vector is +z (nerfstudio's z-up convention). "none": keep
    the LLFF world axes."""
    scene_scale: Optional[float] = None
    """None: the scene box is the bounding box of all camera frusta between their near and far bounds. A number s:
    nerfstudio's box [-s, s]^3 (for methods that contract space and only use the box for scale)."""
    use_masks: bool = True
    """Load masks from ``masks_<K>/`` or ``masks/`` when present (1 = use pixel, 0 = ignore; see module docs)."""
    mask_threshold: float = 0.5
    """Mask pixels with value >= mask_threshold * 255 (after conversion to grey) are 1 (used)."""
    invert_masks: bool = False
    """Set for masks that are white where pixels must be ignored."""
    alpha_color: Optional[str] = None
    """Background colour composited under RGBA images ("white", "black", ...). None keeps RGBA images as they are.
    LLFF images are RGB, for which this has no effect."""
    cache_dir: Optional[Path] = None
    """Root folder for derived files (binarised masks, downscaled images); each scene gets a subfolder
    ``<scene>-<hash of its path>``. None: $NG_METHODS_CACHE/llff, else $XDG_CACHE_HOME/ng_methods/llff, else
    ~/.cache/ng_methods/llff."""


def holdout_indices(num_images: int, holdout_every: int, split: str) -> np.ndarray:
    """Indices of ``split`` ("train", "val", "test" or "all") under LLFF's ``i % holdout_every == 0`` holdout."""
    all_idx = np.arange(num_images)
    if split == "all" or holdout_every <= 0:
        return all_idx
    test = all_idx[all_idx % holdout_every == 0]
    if split == "train":
        return all_idx[all_idx % holdout_every != 0]
    if split in ("val", "test"):
        return test
    raise ValueError(f"Unknown split {split!r}; expected 'train', 'val', 'test' or 'all'")


@dataclass
class _Scene:
    """Everything computed once for all images; splits index into it."""

    image_filenames: List[Path]
    mask_filenames: Optional[List[Path]]
    camera_to_worlds: torch.Tensor  # [N, 3, 4], OpenGL convention, output frame
    intrinsics: Intrinsics
    bounds: torch.Tensor  # [N, 2], output units
    scene_box: SceneBox
    transform: torch.Tensor  # [3, 4]
    scale: float
    forward_facing: bool
    downscale_factor: int


@dataclass
class LLFF(DataParser):
    """Dataparser for LLFF ``poses_bounds.npy`` scenes. See the module docstring for the conventions."""

    config: LLFFDataParserConfig

    def __init__(self, config: LLFFDataParserConfig):
        super().__init__(config=config)
        self._scene: Optional[_Scene] = None

    # ------------------------------------------------------------------ outputs
    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        scene = self._load_scene()
        n = len(scene.image_filenames)
        idx = holdout_indices(n, self.config.holdout_every, split)
        if len(idx) == 0:
            raise DataValidationError(
                f"Split '{split}' of {self.config.data} is empty: {n} images with holdout_every="
                f"{self.config.holdout_every} (image i is held out when i % {self.config.holdout_every} == 0)"
            )
        t = torch.from_numpy(idx).long()
        cameras = Cameras(
            camera_to_worlds=scene.camera_to_worlds[t],
            fx=scene.intrinsics.fx[t],
            fy=scene.intrinsics.fy[t],
            cx=scene.intrinsics.cx[t],
            cy=scene.intrinsics.cy[t],
            width=scene.intrinsics.width[t],
            height=scene.intrinsics.height[t],
            camera_type=CameraType.PERSPECTIVE,
        )
        alpha_color = get_color(self.config.alpha_color) if self.config.alpha_color is not None else None
        metadata: Dict[str, object] = {
            "near": float(scene.bounds[:, 0].min()),
            "far": float(scene.bounds[:, 1].max()),
            "bounds": scene.bounds[t].clone(),
            "forward_facing": scene.forward_facing,
        }
        return DataparserOutputs(
            image_filenames=[scene.image_filenames[i] for i in idx],
            cameras=cameras,
            alpha_color=alpha_color,
            scene_box=scene.scene_box,
            mask_filenames=[scene.mask_filenames[i] for i in idx] if scene.mask_filenames is not None else None,
            metadata=metadata,
            dataparser_transform=scene.transform,
            dataparser_scale=scene.scale,
        )

    # ------------------------------------------------------------------ loading
    def _load_scene(self) -> _Scene:
        if self._scene is None:
            self._scene = self._build_scene()
        return self._scene

    def _build_scene(self) -> _Scene:
        cfg = self.config
        poses_path = cfg.data / POSES_FILE
        arr = load_poses_bounds(cfg.data)
        chosen = choose_image_folder(
            cfg.data,
            num_poses=arr.shape[0],
            downscale_factor=cfg.downscale_factor,
            max_auto_resolution=cfg.max_auto_resolution,
            cache_root=cfg.cache_dir,
        )
        # Names of the images in the data folder (for a derived folder: those it was made from, in the same order),
        # used in messages and to match masks.
        source_names = [p.name for p in chosen.sources]
        poses, bounds = split_poses_bounds(arr, poses_path, source_names)
        intrinsics = intrinsics_from_hwf(poses[:, :, 4], chosen.images, chosen.folder, poses_path)
        center_method: Literal["focus", "poses", "none"] = cfg.center_method if cfg.recenter else "none"
        world = normalize_poses(poses, bounds, cfg.orientation_method, center_method, cfg.bd_factor, cfg.scale_factor)
        aabb = scene_aabb(cfg.scene_scale, world.camera_to_worlds, intrinsics, world.bounds)
        masks = None
        if cfg.use_masks:
            masks = find_masks(
                cfg.data,
                chosen.factor,
                chosen.images,
                source_names,
                threshold=cfg.mask_threshold,
                invert=cfg.invert_masks,
                cache_root=cfg.cache_dir,
            )
        return _Scene(
            image_filenames=chosen.images,
            mask_filenames=masks,
            camera_to_worlds=world.camera_to_worlds,
            intrinsics=intrinsics,
            bounds=world.bounds,
            scene_box=SceneBox(aabb=aabb),
            transform=world.transform,
            scale=world.scale,
            forward_facing=is_forward_facing(world.camera_to_worlds),
            downscale_factor=chosen.factor,
        )
