"""``neus-data``: object scenes in the NeuS/IDR layout (DTU, BlendedMVS as preprocessed by NeuS).

File layout (Totoro97/NeuS ``models/dataset.py``)::

    <data>/image/*.png          the views, paired with cameras by sorted file name (view i = i-th file)
    <data>/mask/*.png           one object mask per view, paired by sorted order (white = object)
    <data>/cameras_sphere.npz   world_mat_i (world -> pixel projection K [R | t], 4x4 or 3x4) and scale_mat_i
                                (4x4, normalised space -> world: the object's bounding sphere -> the unit sphere)

Cameras (:mod:`ng_methods.data.neus_cameras`): as NeuS, ``P = world_mat_i @ scale_mat_i`` is decomposed into
``K / K[2, 2]`` and a camera-to-world pose in the *normalised* space, which is then converted to nerfstudio's OpenGL
axes. The object lies inside the unit sphere, so ``scene_box`` is [-1, 1]^3 and there is no further transform
(``dataparser_transform`` identity, ``dataparser_scale`` 1). Every view must share one ``scale_mat`` (NeuS exports
meshes with ``scale_mat_0``); ``metadata["scale_mat"]`` (4x4 float64) maps normalised -> world coordinates.

Masks reach the model as ``metadata["fg_mask_filenames"]`` (one per image of the split, same order), never as
nerfstudio's ``mask_filenames``, which would restrict where pixels are sampled: NeuS samples all pixels and puts a
mask loss on the accumulation. :mod:`ng_methods.data.neus_dataset` turns them into a per-ray ``batch["fg_mask"]``.

Splits: ``holdout_every=0`` (the papers' protocol: NeuS trains on every view; evaluation re-renders them) gives
every view to every split; ``holdout_every=N`` makes view ``i`` an eval view when ``i % N == 0``; ``eval_views``
lists the eval views explicitly (NeuS2's converter holds out 8, 13, 16, 21, 26, 31, 34, 56).

``downscale_factor=K > 1`` resizes images (LANCZOS) and masks (box filter, thresholded at 0.5) once into a cache
(``cache_dir``, else ``$NG_METHODS_CACHE/neus``, else ``$XDG_CACHE_HOME/ng_methods/neus``, else
``~/.cache/ng_methods/neus``; never the data folder) and scales the intrinsics by the exact size ratio.

Bad input raises one :class:`~ng_methods.data.validation.DataValidationError` at setup, naming the file (see
:func:`load_neus_scene`). Dataparser-level imports only (see ``ng_methods.data``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from PIL import Image

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.rich_utils import CONSOLE

from ng_methods.data.llff_images import atomic_save, is_fresh, scene_cache_dir
from ng_methods.data.neus_cameras import neus_cameras
from ng_methods.data.validation import DataValidationError, check_images_decodable, format_list, read_image_size

__all__ = ["NeuSDataParserConfig", "NeuSDataParser", "NeuSScene", "load_neus_scene", "holdout_split"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class NeuSDataParserConfig(DataParserConfig):
    """NeuS/IDR-layout object scenes (``image/``, ``mask/``, ``cameras_sphere.npz``), e.g. DTU."""

    _target: Type = field(default_factory=lambda: NeuSDataParser)
    """target class to instantiate"""
    data: Path = Path("data/dtu/scan65")
    """Scene directory holding ``image/``, ``mask/`` and the cameras file."""
    cameras_file: str = "cameras_sphere.npz"
    """Cameras file inside ``data`` with ``world_mat_i`` and ``scale_mat_i`` (NeuS's default; DTU copies also ship
    ``cameras_large.npz``, whose sphere encloses more than the object)."""
    holdout_every: int = 0
    """0: the papers' protocol, every view trains and the eval split is the same views. N > 0: view i (sorted
    order) is held out for evaluation (PSNR, mask IoU) when i % N == 0; the others train."""
    eval_views: Tuple[int, ...] = ()
    """Explicit eval view indices (sorted order); when given they override ``holdout_every`` and the other views
    train. Indices past the last view are ignored, as in NeuS2's ``tools/data_format_from_neus.py``, whose DTU test
    views are (8, 13, 16, 21, 26, 31, 34, 56)."""
    downscale_factor: int = 1
    """Shrink images and masks by this factor (cached resized copies, intrinsics scaled), e.g. for CPU runs."""
    cache_dir: Optional[Path] = None
    """Root for the resized copies; None: $NG_METHODS_CACHE/neus, else $XDG_CACHE_HOME/ng_methods/neus, else
    ~/.cache/ng_methods/neus."""


@dataclass
class NeuSScene:
    """Every view of a scene, at the resolution used; splits index into it."""

    image_filenames: List[Path]
    mask_filenames: List[Path]
    intrinsics: np.ndarray  # [N, 3, 3], pixels of the images used
    camera_to_worlds: np.ndarray  # [N, 3, 4], OpenGL axes, normalised space
    sizes: List[Tuple[int, int]]  # (width, height) per view
    scale_mat: np.ndarray  # [4, 4], normalised -> world


def holdout_split(num_views: int, holdout_every: int, split: str, eval_views: Sequence[int] = ()) -> np.ndarray:
    """Indices of ``split``. Eval ("val", "test") views: ``eval_views`` when given, else those with
    ``i % holdout_every == 0``; "train": the other views. Every view for "all", and for every split when neither
    ``eval_views`` nor ``holdout_every > 0`` is given."""
    every = np.arange(num_views)
    if eval_views:
        held_out = np.isin(every, np.asarray(eval_views))
    elif holdout_every > 0:
        held_out = every % holdout_every == 0
    else:
        held_out = np.zeros(num_views, dtype=bool)
    if split == "all" or not held_out.any():
        return every
    if split == "train":
        return every[~held_out]
    if split in ("val", "test"):
        return every[held_out]
    raise ValueError(f"Unknown split {split!r}; expected 'train', 'val', 'test' or 'all'")


class NeuSDataParser(DataParser):
    """Dataparser for NeuS/IDR-layout scenes. See the module docstring for the conventions."""

    config: NeuSDataParserConfig

    def __init__(self, config: NeuSDataParserConfig):
        super().__init__(config=config)
        self._scene: Optional[NeuSScene] = None

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        if self._scene is None:
            self._scene = load_neus_scene(self.config)
        scene = self._scene
        cfg = self.config
        num_views = len(scene.image_filenames)
        if cfg.eval_views and min(cfg.eval_views) >= num_views:
            raise DataValidationError(
                f"None of eval_views={tuple(cfg.eval_views)} exists in {cfg.data}, which has {num_views} views"
            )
        idx = holdout_split(num_views, cfg.holdout_every, split, cfg.eval_views)
        if len(idx) == 0:
            raise DataValidationError(
                f"Split '{split}' of {cfg.data} is empty: {num_views} views with "
                f"holdout_every={cfg.holdout_every}, eval_views={tuple(cfg.eval_views)}"
            )
        k = torch.from_numpy(scene.intrinsics[idx]).float()
        sizes = torch.tensor([scene.sizes[i] for i in idx], dtype=torch.int64)
        cameras = Cameras(
            camera_to_worlds=torch.from_numpy(scene.camera_to_worlds[idx]).float(),
            fx=k[:, 0, 0:1],
            fy=k[:, 1, 1:2],
            cx=k[:, 0, 2:3],
            cy=k[:, 1, 2:3],
            width=sizes[:, 0:1],
            height=sizes[:, 1:2],
            camera_type=CameraType.PERSPECTIVE,
        )
        return DataparserOutputs(
            image_filenames=[scene.image_filenames[i] for i in idx],
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])),
            metadata={
                "fg_mask_filenames": [scene.mask_filenames[i] for i in idx],
                "scale_mat": scene.scale_mat.copy(),
            },
            dataparser_transform=torch.eye(4)[:3, :],
            dataparser_scale=1.0,
        )


# ------------------------------------------------------------------------------------------------ scene loading
def load_neus_scene(config: NeuSDataParserConfig) -> NeuSScene:
    """Validate and load every view of ``config.data``.

    Raises:
        DataValidationError: naming the file or folder when the data folder, ``image/`` or ``mask/`` is missing or
            empty, image and mask counts differ, the cameras file is missing or unreadable, ``world_mat_i`` /
            ``scale_mat_i`` keys are missing (listed) or their count differs from the images', a matrix is not
            finite, has the wrong shape or is singular (the key is named), views have different ``scale_mat``, an
            image or mask cannot be decoded, or an image and its mask differ in size.
    """
    data = Path(config.data)
    if not data.is_dir():
        raise DataValidationError(f"NeuS data directory {data} does not exist (or is not a directory)")
    if config.downscale_factor < 1:
        raise DataValidationError(f"downscale_factor must be >= 1, got {config.downscale_factor} (data: {data})")
    images = _list_images(data / "image")
    masks = _list_images(data / "mask")
    if len(images) != len(masks):
        raise DataValidationError(
            f"{data / 'image'} has {len(images)} images but {data / 'mask'} has {len(masks)} masks; NeuS pairs "
            "them by sorted file name, so there must be one mask per image"
        )
    cameras_path = data / config.cameras_file
    world_mats, scale_mats = _load_camera_matrices(cameras_path, len(images))
    image_sizes = check_images_decodable(images, source=data / "image")
    mask_sizes = check_images_decodable(masks, source=data / "mask", what="mask")
    for image, mask, image_size, mask_size in zip(images, masks, image_sizes, mask_sizes):
        if image_size != mask_size:
            raise DataValidationError(
                f"Mask {mask} is {mask_size[0]}x{mask_size[1]} but its image {image} is "
                f"{image_size[0]}x{image_size[1]}; a mask must have its image's size"
            )
    try:
        intrinsics, camera_to_worlds = neus_cameras(world_mats, scale_mats)
    except ValueError as e:  # world_mat_i @ scale_mat_i degenerate although each passed its own check
        raise DataValidationError(f"Cannot decompose world_mat_i @ scale_mat_i of {cameras_path}: {e}") from None
    if abs(intrinsics[:, 0, 1]).max() > 1e-3:
        CONSOLE.log(
            f"neus-data: {cameras_path} has skewed intrinsics (max |K[0, 1]| = {abs(intrinsics[:, 0, 1]).max():.3g} "
            "px); nerfstudio's pinhole cameras have no skew, so it is ignored"
        )
    sizes = [tuple(s) for s in image_sizes]
    if config.downscale_factor > 1:
        images, masks, sizes, intrinsics = _downscaled(config, images, masks, sizes, intrinsics)
    return NeuSScene(images, masks, intrinsics, camera_to_worlds, sizes, scale_mats[0].copy())


def _list_images(folder: Path) -> List[Path]:
    if not folder.is_dir():
        raise DataValidationError(
            f"NeuS data folder {folder} does not exist; the layout is image/*.png, mask/*.png and cameras_sphere.npz"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DataValidationError(f"{folder} has no images (.png, .jpg)")
    return files


def _load_camera_matrices(path: Path, num_views: int) -> Tuple[np.ndarray, np.ndarray]:
    """``world_mat_i`` [N, 4, 4] (3x4 ones padded) and ``scale_mat_i`` [N, 4, 4] for ``i < num_views``, checked."""
    if not path.is_file():
        present = sorted(p.name for p in path.parent.glob("*.npz"))
        raise DataValidationError(
            f"Cameras file {path} does not exist (.npz files in {path.parent}: {format_list(present) or 'none'})"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: np.asarray(npz[key]) for key in npz.files}
    except Exception as e:  # noqa: BLE001 - numpy/zipfile raise many types for a broken file
        raise DataValidationError(f"Cannot read cameras file {path}: {e}") from None
    needed = [f"{kind}_{i}" for i in range(num_views) for kind in ("world_mat", "scale_mat")]
    missing = [key for key in needed if key not in arrays]
    if missing:
        raise DataValidationError(
            f"{path} lacks {len(missing)} of the {len(needed)} keys needed for {num_views} images: "
            f"{format_list(missing)} (view i needs world_mat_i and scale_mat_i)"
        )
    extra = sorted(k for k in arrays if k.startswith("world_mat_") and k[len("world_mat_"):].isdigit()
                   and int(k[len("world_mat_"):]) >= num_views)
    if extra:
        raise DataValidationError(
            f"{path} has cameras for more views than the {num_views} images in {path.parent / 'image'} (extra: "
            f"{format_list(extra)}); an image is missing, or the cameras belong to another scene"
        )
    world_mats = np.stack([_checked_matrix(arrays, f"world_mat_{i}", path) for i in range(num_views)])
    scale_mats = np.stack([_checked_matrix(arrays, f"scale_mat_{i}", path) for i in range(num_views)])
    for i in range(1, num_views):
        if not np.allclose(scale_mats[i], scale_mats[0], rtol=1e-6, atol=1e-9):
            raise DataValidationError(
                f"scale_mat_{i} in {path} differs from scale_mat_0; every view must share one normalisation "
                "(the normalised space and the exported mesh use scale_mat_0)"
            )
    return world_mats, scale_mats


def _checked_matrix(arrays: Dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    """``arrays[key]`` as a finite, non-singular 4x4 float64 matrix (a 3x4 projection gets the row [0, 0, 0, 1])."""
    matrix = arrays[key]
    allowed = ((3, 4), (4, 4)) if key.startswith("world_mat") else ((4, 4),)
    if matrix.shape not in allowed or not np.issubdtype(matrix.dtype, np.number):
        raise DataValidationError(
            f"{key} in {path} has shape {matrix.shape} and dtype {matrix.dtype}; expected a numeric "
            f"{' or '.join('x'.join(map(str, s)) for s in allowed)} matrix"
        )
    matrix = matrix.astype(np.float64)
    if not np.isfinite(matrix).all():
        raise DataValidationError(f"{key} in {path} has non-finite (NaN or inf) entries")
    if matrix.shape == (3, 4):
        matrix = np.concatenate([matrix, [[0.0, 0.0, 0.0, 1.0]]])
    block = matrix[:3, :3]
    det = np.linalg.det(block)
    if abs(det) <= 1e-12 * max(np.abs(block).max(), 1e-300) ** 3:
        what = "projection (its 3x3 part)" if key.startswith("world_mat") else "transform"
        raise DataValidationError(f"{key} in {path} is a singular {what}: det = {det:.3g}")
    return matrix


# ---------------------------------------------------------------------------------------------------- downscale
def _cache_root(config: NeuSDataParserConfig) -> Path:
    if config.cache_dir is not None:
        return Path(config.cache_dir)
    env = os.environ.get("NG_METHODS_CACHE")
    if env is None:
        env = str(Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "ng_methods")
    return Path(env) / "neus"


def _downscaled(
    config: NeuSDataParserConfig,
    images: List[Path],
    masks: List[Path],
    sizes: List[Tuple[int, int]],
    intrinsics: np.ndarray,
) -> Tuple[List[Path], List[Path], List[Tuple[int, int]], np.ndarray]:
    """Resized copies of images and masks in the cache, their sizes and the intrinsics scaled to them."""
    factor = config.downscale_factor
    folder = scene_cache_dir(Path(config.data), _cache_root(config))
    new_sizes = [(max(1, round(w / factor)), max(1, round(h / factor))) for w, h in sizes]
    new_images = _resize_all(images, folder / f"image_{factor}", new_sizes, is_mask=False)
    new_masks = _resize_all(masks, folder / f"mask_{factor}", new_sizes, is_mask=True)
    scaled = intrinsics.copy()
    for i, ((w, h), (new_w, new_h)) in enumerate(zip(sizes, new_sizes)):
        # Exact for continuous pixel coordinates: a resize maps u to u * new_w / w.
        scaled[i, 0, :] *= new_w / w
        scaled[i, 1, :] *= new_h / h
    return new_images, new_masks, new_sizes, scaled


def _resize_all(sources: List[Path], folder: Path, sizes: List[Tuple[int, int]], is_mask: bool) -> List[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out, made = [], 0
    for src, size in zip(sources, sizes):
        dst = folder / (src.stem + ".png")
        if not (is_fresh(dst, src) and read_image_size(dst, folder) == size):
            with Image.open(src) as im:
                if is_mask:
                    grey = np.asarray(im.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float32)
                    resized = Image.fromarray(np.where(grey >= 127.5, 255, 0).astype(np.uint8), mode="L")
                else:
                    resized = im.convert("RGB").resize(size, Image.Resampling.LANCZOS)
            atomic_save(resized, dst)
            made += 1
        out.append(dst)
    if made:
        CONSOLE.log(f"neus-data: wrote {made} {'masks' if is_mask else 'images'} resized to {folder}")
    return out
