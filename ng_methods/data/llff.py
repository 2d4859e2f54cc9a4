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
into the data directory, and are rebuilt when the source is newer.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from PIL import Image

from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.colors import get_color
from nerfstudio.utils.rich_utils import CONSOLE

from ng_methods.data.validation import (
    DataValidationError,
    check_image_files,
    check_intrinsics,
    check_poses,
    format_list,
)

__all__ = ["LLFFDataParserConfig", "LLFF", "IMAGE_EXTENSIONS", "holdout_indices"]

POSES_FILE = "poses_bounds.npy"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FOLDER_RE = re.compile(r"^images(?:_(\d+))?$")


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


def _list_images(folder: Path) -> List[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _image_size(path: Path, source: Path) -> Tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # noqa: BLE001 - PIL raises many types for broken files
        raise DataValidationError(f"Cannot read image {path} (listed for {source}): {e}") from None


def _atomic_save(image: Image.Image, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    image.save(tmp, format="PNG")
    os.replace(tmp, dst)


def _is_fresh(dst: Path, src: Path) -> bool:
    return dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime


def _derived_names(sources: Sequence[Path]) -> List[str]:
    stems = [p.stem for p in sources]
    if len(set(stems)) == len(stems):
        return [s + ".png" for s in stems]
    return [p.name + ".png" for p in sources]


@dataclass
class _Scene:
    """Everything computed once for all images; splits index into it."""

    image_filenames: List[Path]
    mask_filenames: Optional[List[Path]]
    camera_to_worlds: torch.Tensor  # [N, 3, 4], OpenGL convention, output frame
    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: torch.Tensor
    height: torch.Tensor
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
            fx=scene.fx[t],
            fy=scene.fy[t],
            cx=scene.cx[t],
            cy=scene.cy[t],
            width=scene.width[t],
            height=scene.height[t],
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

    def _cache_dir(self) -> Path:
        root = self.config.cache_dir
        if root is None:
            env = os.environ.get("NG_METHODS_CACHE")
            if env is None:
                env = str(Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "ng_methods")
            root = Path(env) / "llff"
        data = self.config.data.resolve()
        key = hashlib.sha1(str(data).encode("utf-8")).hexdigest()[:10]
        return Path(root) / f"{data.name}-{key}"

    def _load_poses_bounds(self) -> np.ndarray:
        data = self.config.data
        path = data / POSES_FILE
        if not data.is_dir():
            raise DataValidationError(f"LLFF data directory {data} does not exist (or is not a directory)")
        if not path.is_file():
            contents = sorted(p.name for p in data.iterdir())
            raise DataValidationError(
                f"File not found: {path} (LLFF scenes need {POSES_FILE}; {data} contains: "
                f"{format_list(contents, 10) or 'nothing'})"
            )
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - numpy raises ValueError/OSError/EOFError/...
            raise DataValidationError(f"Cannot read {path} as a numpy array: {e}") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
            dtype = getattr(arr, "dtype", type(arr).__name__)
            raise DataValidationError(f"{path} must hold a numeric N x 17 array, got dtype {dtype}")
        if arr.ndim != 2 or arr.shape[1] != 17:
            raise DataValidationError(
                f"{path} has shape {tuple(arr.shape)}; expected N x 17 (per image: a 3x5 pose matrix flattened = "
                "3x4 camera-to-world + (h, w, focal) column, then near and far bounds)"
            )
        if arr.shape[0] == 0:
            raise DataValidationError(f"{path} has no rows (no cameras)")
        return arr.astype(np.float64)

    def _available_folders(self) -> Dict[int, Path]:
        out: Dict[int, Path] = {}
        for p in self.config.data.iterdir():
            m = _FOLDER_RE.match(p.name)
            if m and p.is_dir():
                factor = int(m.group(1)) if m.group(1) else 1
                if factor >= 1:
                    out[factor] = p
        return out

    def _choose_folder(self, num_poses: int) -> Tuple[int, Path, List[Path], List[Path]]:
        """Returns (factor, folder, image paths, source image paths), making a downscaled folder in the cache if
        needed (the source images are the data-folder images the used ones were made from, else the same)."""
        data = self.config.data
        available = self._available_folders()
        if not available:
            contents = sorted(p.name for p in data.iterdir())
            raise DataValidationError(
                f"No image folder in {data}: expected 'images/' or 'images_<K>/' next to {POSES_FILE} "
                f"(found: {format_list(contents, 10) or 'nothing'})"
            )
        requested = self.config.downscale_factor
        if requested is not None:
            if requested < 1:
                raise DataValidationError(f"downscale_factor must be >= 1, got {requested}")
            if requested in available:
                images = self._folder_images(available[requested], num_poses)
                return requested, available[requested], images, images
            divisors = [f for f in sorted(available, reverse=True) if requested % f == 0]
            if not divisors:
                raise DataValidationError(
                    f"downscale_factor={requested}: {data} has no 'images_{requested}/' folder and no finer folder "
                    f"whose factor divides {requested} to make it from (available factors: "
                    f"{format_list(sorted(available))})"
                )
            src_factor = divisors[0]
            src_images = self._folder_images(available[src_factor], num_poses)
            folder, images = self._make_downscaled(src_images, requested // src_factor, requested)
            return requested, folder, images, src_images
        for factor in sorted(available):
            images = self._folder_images(available[factor], num_poses)
            if max(_image_size(images[0], available[factor])) <= self.config.max_auto_resolution:
                return factor, available[factor], images, images
        factor = max(available)
        CONSOLE.log(
            f"[yellow]llff-data: every image folder of {data} is larger than {self.config.max_auto_resolution}px; "
            f"using the coarsest, images_{factor}/"
        )
        images = self._folder_images(available[factor], num_poses)
        return factor, available[factor], images, images

    def _folder_images(self, folder: Path, num_poses: int) -> List[Path]:
        images = _list_images(folder)
        if len(images) != num_poses:
            raise DataValidationError(
                f"{self.config.data / POSES_FILE} has {num_poses} poses (rows) but {folder} has {len(images)} images "
                f"({'/'.join(IMAGE_EXTENSIONS)}); there must be one image per row, matched in sorted file-name order"
            )
        return images

    def _make_downscaled(self, src_images: List[Path], relative: int, factor: int) -> Tuple[Path, List[Path]]:
        folder = self._cache_dir() / f"images_{factor}"
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        made = 0
        for src, name in zip(src_images, _derived_names(src_images)):
            dst = folder / name
            if not _is_fresh(dst, src):
                with Image.open(src) as im:
                    w, h = im.size
                    size = (max(1, round(w / relative)), max(1, round(h / relative)))
                    _atomic_save(im.resize(size, resample=Image.Resampling.LANCZOS), dst)
                made += 1
            out.append(dst)
        if made:
            CONSOLE.log(f"llff-data: wrote {made} images downscaled by {relative} to {folder}")
        return folder, out

    def _find_masks(self, factor: int, images: List[Path], source_names: List[str]) -> Optional[List[Path]]:
        if not self.config.use_masks:
            return None
        data = self.config.data
        candidates = [data / f"masks_{factor}"] if factor != 1 else []
        candidates.append(data / "masks")
        mask_dir = next((c for c in candidates if c.is_dir()), None)
        if mask_dir is None:
            return None
        src_masks = []
        missing = []
        for name in source_names:
            stem = Path(name).stem
            options = [name, stem + ".png", stem + ".jpg", stem + ".jpeg", stem + ".PNG", stem + ".JPG", name + ".png"]
            found = next((mask_dir / o for o in options if (mask_dir / o).is_file()), None)
            if found is None:
                missing.append(mask_dir / (stem + ".png"))
            else:
                src_masks.append(found)
        if missing:
            raise DataValidationError(
                f"{len(missing)} of {len(source_names)} masks are missing in {mask_dir} (a mask must have the image's "
                f"file name or stem): {format_list(missing)}. Set use_masks=False to train without masks"
            )
        check_image_files(src_masks, source=mask_dir, what="mask")
        return self._binarise_masks(src_masks, images, factor)

    def _binarise_masks(self, src_masks: List[Path], images: List[Path], factor: int) -> List[Path]:
        thr = self.config.mask_threshold
        tag = f"masks_{factor}_t{int(round(thr * 255))}" + ("_inv" if self.config.invert_masks else "")
        folder = self._cache_dir() / tag
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        made = 0
        cut = thr * 255.0
        for src, image, name in zip(src_masks, images, _derived_names(images)):
            dst = folder / name
            size = _image_size(image, image.parent)
            if not (_is_fresh(dst, src) and _image_size(dst, folder) == size):
                with Image.open(src) as m:
                    grey = m.convert("L")
                    if grey.size != size:
                        src_aspect, img_aspect = grey.size[0] / grey.size[1], size[0] / size[1]
                        if abs(src_aspect / img_aspect - 1.0) > 0.02:
                            raise DataValidationError(
                                f"Mask {src} is {grey.size[0]}x{grey.size[1]} but image {image} is {size[0]}x{size[1]}:"
                                " different aspect ratios, so the mask cannot be matched to the image"
                            )
                        grey = grey.resize(size, resample=Image.Resampling.BILINEAR)
                    valid = np.asarray(grey, dtype=np.float32) >= cut
                    if self.config.invert_masks:
                        valid = ~valid
                    _atomic_save(Image.fromarray(valid.astype(np.uint8) * 255, mode="L"), dst)
                made += 1
            out.append(dst)
        if made:
            CONSOLE.log(f"llff-data: wrote {made} binarised masks (1 = use pixel) to {folder}")
        return out

    def _build_scene(self) -> _Scene:
        cfg = self.config
        poses_path = cfg.data / POSES_FILE
        arr = self._load_poses_bounds()
        num = arr.shape[0]
        factor, folder, images, source_images = self._choose_folder(num)
        # Names of the images in the data folder (for a derived folder: those it was made from, in the same order),
        # used in messages and to match masks.
        source_names = [p.name for p in source_images]

        poses = arr[:, :15].reshape(num, 3, 5)
        check_poses(poses[:, :, :4], source=poses_path, names=source_names, what="image")
        hwf = poses[:, :, 4]
        check_intrinsics(poses_path, source_names, height=hwf[:, 0], width=hwf[:, 1], focal=hwf[:, 2])
        bounds = arr[:, 15:17]
        bad = np.flatnonzero(~np.isfinite(bounds).all(axis=1) | (bounds[:, 0] <= 0) | (bounds[:, 1] <= bounds[:, 0]))
        if len(bad):
            i = bad[0]
            raise DataValidationError(
                f"Bad near/far bounds {bounds[i].tolist()} in {poses_path} row {i} ({source_names[i]}): need "
                f"0 < near < far, finite ({len(bad)} of {num} rows affected)"
            )

        # ---- intrinsics, per image, from the actual file sizes
        sizes = np.array([_image_size(p, folder) for p in images], dtype=np.float64)  # (w, h)
        w_img, h_img = sizes[:, 0], sizes[:, 1]
        h_full, w_full, focal = hwf[:, 0], hwf[:, 1], hwf[:, 2]
        sx, sy = w_img / w_full, h_img / h_full
        mismatch = np.abs(w_img - w_full * sy) > np.maximum(1.0, 0.01 * w_img)
        if mismatch.any():
            i = int(np.flatnonzero(mismatch)[0])
            raise DataValidationError(
                f"Image {images[i]} is {int(w_img[i])}x{int(h_img[i])} (w x h) but {poses_path} row {i} describes a "
                f"{int(w_full[i])}x{int(h_full[i])} image (hwf = {hwf[i].tolist()}): the aspect ratios differ, so the "
                "intrinsics cannot be scaled (is the image cropped, or rotated by its EXIF orientation?)"
            )
        if len(set(map(tuple, sizes.tolist()))) > 1:
            CONSOLE.log(f"llff-data: images in {folder} have different sizes; using per-image intrinsics")
        fx = focal * sx
        fy = focal * sy
        cx = w_img / 2.0
        cy = h_img / 2.0

        # ---- camera axes: LLFF [down, right, backwards] -> OpenGL [right, up, backwards]
        c2w = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
        poses44 = torch.eye(4, dtype=torch.float32).repeat(num, 1, 1)
        poses44[:, :3, :] = torch.from_numpy(c2w).float()
        c2w_t, transform = camera_utils.auto_orient_and_center_poses(
            poses44,
            method=cfg.orientation_method,
            center_method=cfg.center_method if cfg.recenter else "none",
        )
        scale = float(cfg.scale_factor)
        if cfg.bd_factor is not None:
            if cfg.bd_factor <= 0:
                raise DataValidationError(f"bd_factor must be positive (or None), got {cfg.bd_factor}")
            scale /= float(bounds[:, 0].min()) * cfg.bd_factor
        c2w_t = c2w_t[:, :3, :].clone()
        c2w_t[:, :, 3] *= scale
        bounds_t = torch.from_numpy(bounds * scale).float()

        view_dirs = -c2w_t[:, :, 2]
        forward_facing = bool(torch.linalg.norm(view_dirs.mean(dim=0)) > 0.9)

        fx_t = torch.from_numpy(fx).float()[:, None]
        fy_t = torch.from_numpy(fy).float()[:, None]
        width_t = torch.from_numpy(w_img).long()[:, None]
        height_t = torch.from_numpy(h_img).long()[:, None]
        if cfg.scene_scale is not None:
            s = float(cfg.scene_scale)
            aabb = torch.tensor([[-s, -s, -s], [s, s, s]], dtype=torch.float32)
        else:
            aabb = _frusta_aabb(c2w_t, fx_t, fy_t, width_t, height_t, bounds_t)

        masks = self._find_masks(factor, images, source_names)
        return _Scene(
            image_filenames=images,
            mask_filenames=masks,
            camera_to_worlds=c2w_t,
            fx=fx_t,
            fy=fy_t,
            cx=torch.from_numpy(cx).float()[:, None],
            cy=torch.from_numpy(cy).float()[:, None],
            width=width_t,
            height=height_t,
            bounds=bounds_t,
            scene_box=SceneBox(aabb=aabb),
            transform=transform.float(),
            scale=scale,
            forward_facing=forward_facing,
            downscale_factor=factor,
        )


def _frusta_aabb(
    c2w: torch.Tensor,
    fx: torch.Tensor,
    fy: torch.Tensor,
    width: torch.Tensor,
    height: torch.Tensor,
    bounds: torch.Tensor,
) -> torch.Tensor:
    """Axis-aligned box around the camera centres and each camera's frustum between its near and far bound."""
    half_x = (width.float() / 2.0) / fx  # [N, 1], tan of half the horizontal field of view
    half_y = (height.float() / 2.0) / fy
    signs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # [4, 2]
    pts = [c2w[:, :, 3]]
    for k in range(2):
        depth = bounds[:, k : k + 1]  # [N, 1]
        x = signs[None, :, 0] * half_x * depth  # [N, 4]
        y = signs[None, :, 1] * half_y * depth
        z = -depth.expand_as(x)
        local = torch.stack([x, y, z], dim=-1)  # [N, 4, 3], OpenGL camera coordinates
        world = torch.einsum("nij,nkj->nki", c2w[:, :, :3], local) + c2w[:, None, :, 3]
        pts.append(world.reshape(-1, 3))
    allpts = torch.cat(pts, dim=0)
    return torch.stack([allpts.min(dim=0).values, allpts.max(dim=0).values])
