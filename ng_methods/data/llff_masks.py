"""Masks of ``llff-data``: finding ``masks_<K>/`` or ``masks/`` and writing binarised copies to the cache.

Nerfstudio reads ``mask_filenames`` with ``.bool()`` and needs one channel; 1 = use the pixel, 0 = ignore it.
Source masks (e.g. the statue's 3-channel JPEGs, whose JPEG noise leaves values 1..254 in the black sky) are
therefore converted to grey, resized to their image's size when needed, thresholded at ``threshold * 255``
(optionally inverted) and written as single-channel PNGs under the scene's cache folder. See
:mod:`ng_methods.data.llff` for the conventions. Dataparser-level imports only (see ``ng_methods.data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

from nerfstudio.utils.rich_utils import CONSOLE

from ng_methods.data.llff_images import atomic_save, derived_names, image_size, is_fresh, scene_cache_dir
from ng_methods.data.validation import DataValidationError, check_image_files, check_images_decodable, format_list

__all__ = ["find_masks"]


def find_masks(
    data: Path,
    factor: int,
    images: List[Path],
    source_names: List[str],
    threshold: float,
    invert: bool,
    cache_root: Optional[Path],
) -> Optional[List[Path]]:
    """Binarised masks (one per image of ``images``, in the cache) from ``masks_<factor>/`` (not for factor 1) or
    ``masks/`` in ``data``, matched to the data-folder image names ``source_names``; None without a mask folder."""
    candidates = [data / f"masks_{factor}"] if factor != 1 else []
    candidates.append(data / "masks")
    mask_dir = next((c for c in candidates if c.is_dir()), None)
    if mask_dir is None:
        return None
    src_masks = _match_masks(mask_dir, source_names)
    check_image_files(src_masks, source=mask_dir, what="mask")
    check_images_decodable(src_masks, source=mask_dir, what="mask", hint=", or set use_masks=False")
    tag = f"masks_{factor}_t{int(round(threshold * 255))}" + ("_inv" if invert else "")
    return _binarise_masks(src_masks, images, scene_cache_dir(data, cache_root) / tag, threshold, invert)


def _match_masks(mask_dir: Path, source_names: List[str]) -> List[Path]:
    """The mask of each image: same file name, or same stem with a .png/.jpg/.jpeg extension."""
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
    return src_masks


def _binarise_masks(
    src_masks: List[Path], images: List[Path], folder: Path, threshold: float, invert: bool
) -> List[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    made = 0
    for src, image, name in zip(src_masks, images, derived_names(images)):
        dst = folder / name
        size = image_size(image, image.parent)
        if not (is_fresh(dst, src) and image_size(dst, folder) == size):
            _write_binary_mask(src, image, size, dst, threshold * 255.0, invert)
            made += 1
        out.append(dst)
    if made:
        CONSOLE.log(f"llff-data: wrote {made} binarised masks (1 = use pixel) to {folder}")
    return out


def _write_binary_mask(src: Path, image: Path, size: Tuple[int, int], dst: Path, cut: float, invert: bool) -> None:
    """Grey mask ``src`` resized to ``size`` (the size of ``image``), ``>= cut`` -> 255 (inverted if asked)."""
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
        if invert:
            valid = ~valid
        atomic_save(Image.fromarray(valid.astype(np.uint8) * 255, mode="L"), dst)
