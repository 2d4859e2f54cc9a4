"""Image side of ``llff-data``: which image folder to use, downscaled copies, and the derived-file cache.

See :mod:`ng_methods.data.llff` for the conventions. Derived files (images for a ``downscale_factor`` whose folder
does not exist; binarised masks, :mod:`ng_methods.data.llff_masks`) go to ``<cache root>/<scene>-<hash of the data
path>/`` and are rebuilt when their source is newer. Dataparser-level imports only (see ``ng_methods.data``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image

from nerfstudio.utils.rich_utils import CONSOLE

from ng_methods.data.validation import DataValidationError, check_images_decodable, format_list, read_image_size

__all__ = [
    "IMAGE_EXTENSIONS",
    "POSES_FILE",
    "ImageFolder",
    "atomic_save",
    "choose_image_folder",
    "derived_names",
    "image_size",
    "is_fresh",
    "list_images",
    "scene_cache_dir",
]

POSES_FILE = "poses_bounds.npy"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FOLDER_RE = re.compile(r"^images(?:_(\d+))?$")


@dataclass
class ImageFolder:
    """The images a scene uses: ``images`` (in ``folder``, sorted) and the data-folder images they were made from
    (``sources``: the same list unless ``folder`` is a downscaled copy in the cache)."""

    factor: int
    folder: Path
    images: List[Path]
    sources: List[Path]


# ---------------------------------------------------------------------------------------------- file helpers
def list_images(folder: Path) -> List[Path]:
    """The image files of ``folder`` (by extension, hidden files skipped), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def image_size(path: Path, source: Path) -> Tuple[int, int]:
    """``(width, height)`` of an image file (header only); a ``DataValidationError`` naming ``source`` if it
    cannot be read."""
    return read_image_size(path, source)


def atomic_save(image: Image.Image, dst: Path) -> None:
    """Save ``image`` as PNG to ``dst`` through a temporary file, so readers never see a partial file."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    image.save(tmp, format="PNG")
    os.replace(tmp, dst)


def is_fresh(dst: Path, src: Path) -> bool:
    """Whether the derived file ``dst`` exists and is not older than its source ``src``."""
    return dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime


def derived_names(sources: Sequence[Path]) -> List[str]:
    """PNG file names for files derived from ``sources``: ``<stem>.png``, or ``<name>.png`` if stems collide."""
    stems = [p.stem for p in sources]
    if len(set(stems)) == len(stems):
        return [s + ".png" for s in stems]
    return [p.name + ".png" for p in sources]


def scene_cache_dir(data: Path, cache_root: Optional[Path]) -> Path:
    """``<root>/<scene>-<hash of the resolved data path>``; root: ``cache_root``, else $NG_METHODS_CACHE/llff,
    else $XDG_CACHE_HOME/ng_methods/llff, else ~/.cache/ng_methods/llff."""
    root = cache_root
    if root is None:
        env = os.environ.get("NG_METHODS_CACHE")
        if env is None:
            env = str(Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "ng_methods")
        root = Path(env) / "llff"
    resolved = data.resolve()
    key = hashlib.sha1(str(resolved).encode("utf-8")).hexdigest()[:10]
    return Path(root) / f"{resolved.name}-{key}"


# ---------------------------------------------------------------------------------------------- folder choice
def _available_folders(data: Path) -> Dict[int, Path]:
    out: Dict[int, Path] = {}
    for p in data.iterdir():
        m = _FOLDER_RE.match(p.name)
        if m and p.is_dir():
            factor = int(m.group(1)) if m.group(1) else 1
            if factor >= 1:
                out[factor] = p
    return out


def _folder_images(data: Path, folder: Path, num_poses: int) -> List[Path]:
    images = list_images(folder)
    if len(images) != num_poses:
        raise DataValidationError(
            f"{data / POSES_FILE} has {num_poses} poses (rows) but {folder} has {len(images)} images "
            f"({'/'.join(IMAGE_EXTENSIONS)}); there must be one image per row, matched in sorted file-name order"
        )
    return images


def choose_image_folder(
    data: Path,
    num_poses: int,
    downscale_factor: Optional[int],
    max_auto_resolution: int,
    cache_root: Optional[Path],
) -> ImageFolder:
    """The image folder for ``downscale_factor`` (``images_<K>/``, ``images/`` for 1), made in the scene's cache
    folder (:func:`scene_cache_dir`) from a finer folder whose factor divides it if it does not exist. None: the
    smallest factor whose first image is at most ``max_auto_resolution`` pixels on its long side, else the
    coarsest. The images of the chosen folder (for a derived one: its sources) are checked to decode
    (:func:`~ng_methods.data.validation.check_images_decodable`) before anything is written."""
    available = _available_folders(data)
    if not available:
        contents = sorted(p.name for p in data.iterdir())
        raise DataValidationError(
            f"No image folder in {data}: expected 'images/' or 'images_<K>/' next to {POSES_FILE} "
            f"(found: {format_list(contents, 10) or 'nothing'})"
        )
    if downscale_factor is not None:
        return _requested_folder(data, available, num_poses, downscale_factor, cache_root)
    for factor in sorted(available):
        images = _folder_images(data, available[factor], num_poses)
        if max(image_size(images[0], available[factor])) <= max_auto_resolution:
            return _checked(ImageFolder(factor, available[factor], images, images), data)
    factor = max(available)
    CONSOLE.log(
        f"[yellow]llff-data: every image folder of {data} is larger than {max_auto_resolution}px; "
        f"using the coarsest, images_{factor}/"
    )
    images = _folder_images(data, available[factor], num_poses)
    return _checked(ImageFolder(factor, available[factor], images, images), data)


def _checked(chosen: ImageFolder, data: Path) -> ImageFolder:
    """``chosen`` after checking that the data-folder images it uses (``sources``) decode; only the chosen folder
    is checked, and before anything is derived from it."""
    check_images_decodable(chosen.sources, source=data / POSES_FILE)
    return chosen


def _requested_folder(
    data: Path, available: Dict[int, Path], num_poses: int, requested: int, cache_root: Optional[Path]
) -> ImageFolder:
    if requested < 1:
        raise DataValidationError(f"downscale_factor must be >= 1, got {requested}")
    if requested in available:
        images = _folder_images(data, available[requested], num_poses)
        return _checked(ImageFolder(requested, available[requested], images, images), data)
    divisors = [f for f in sorted(available, reverse=True) if requested % f == 0]
    if not divisors:
        raise DataValidationError(
            f"downscale_factor={requested}: {data} has no 'images_{requested}/' folder and no finer folder "
            f"whose factor divides {requested} to make it from (available factors: "
            f"{format_list(sorted(available))})"
        )
    src_factor = divisors[0]
    src_images = _folder_images(data, available[src_factor], num_poses)
    folder = scene_cache_dir(data, cache_root) / f"images_{requested}"
    chosen = _checked(ImageFolder(requested, folder, [], src_images), data)
    chosen.images = _make_downscaled(src_images, requested // src_factor, folder)
    return chosen


def _make_downscaled(src_images: List[Path], relative: int, folder: Path) -> List[Path]:
    """Copies of ``src_images`` downscaled ``relative`` times (LANCZOS) in ``folder``, made when missing/stale."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    made = 0
    for src, name in zip(src_images, derived_names(src_images)):
        dst = folder / name
        if not is_fresh(dst, src):
            with Image.open(src) as im:
                w, h = im.size
                size = (max(1, round(w / relative)), max(1, round(h / relative)))
                atomic_save(im.resize(size, resample=Image.Resampling.LANCZOS), dst)
            made += 1
        out.append(dst)
    if made:
        CONSOLE.log(f"llff-data: wrote {made} images downscaled by {relative} to {folder}")
    return out
