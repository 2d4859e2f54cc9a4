"""``ng-nerfstudio-data``: nerfstudio's ``transforms.json`` dataparser (nerfstudio and instant-ngp scenes) plus input
validation, and an opt-in way to train on the frames whose images exist.

Behaviour is nerfstudio's ``nerfstudio-data`` (the outputs come from
:class:`nerfstudio.data.dataparsers.nerfstudio_dataparser.Nerfstudio`, with the same fields and defaults). What
this adds: before delegating, ``transforms.json`` (or the JSON file given as ``--data``) is checked, and problems
raise :class:`~ng_methods.data.validation.DataValidationError` naming the file:

- the file is missing, is not valid JSON or not an object; ``frames`` is missing, not a list or empty;
- a frame has no ``file_path`` or ``transform_matrix``, or its matrix is not a finite rigid 4x4 camera-to-world;
- an intrinsic (``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``) is neither at the top level nor in every frame,
  or is not a finite number (focal lengths and sizes also positive);
- image files are missing: the first few are listed with the count. With ``skip_missing_images`` the frames whose
  image exists are used instead, after one warning (instant-ngp's fox lists 67 frames and ships 50 images).

After delegating, the files nerfstudio will load for the split (images, from ``images_<K>`` when it downscales;
masks; depth images) are checked to exist and decode (a truncated or corrupt file is named, see
:func:`~ng_methods.data.validation.check_images_decodable`), images must have their camera's size (exactly, or
within a pixel for a ``images_<K>`` copy, whose rounding nerfstudio does not define) and masks their image's size.

Skipping works on a filtered copy of the JSON in a cache folder that links to everything else in the scene folder
(images, ``images_<K>`` downscales, masks, point clouds), so nerfstudio's relative paths keep working.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio, NerfstudioDataParserConfig

from ng_methods.data.validation import (
    DataValidationError,
    check_frames,
    check_image_files,
    check_images_decodable,
    check_intrinsics,
    format_list,
    load_json,
    read_image_size,
)

__all__ = ["NgNerfstudio", "NgNerfstudioDataParserConfig", "validate_transforms"]

INTRINSICS = {"fl_x": "fx", "fl_y": "fy", "cx": "cx", "cy": "cy", "w": "width", "h": "height"}
"""transforms.json intrinsic keys nerfstudio requires, and their names for :func:`check_intrinsics`."""


def transforms_path(data: Path) -> Path:
    """The transforms file of ``--data``: the path itself when it is a ``.json`` file, else ``<data>/transforms.json``."""
    return data if data.suffix == ".json" else data / "transforms.json"


def validate_transforms(data: Path) -> Tuple[Dict[str, Any], List[int]]:
    """Validate a nerfstudio / instant-ngp ``transforms.json`` (everything but the images' existence).

    Returns:
        The parsed JSON and the indices of the frames whose image file does not exist.

    Raises:
        DataValidationError: naming the transforms file and what is wrong with it.
    """
    path = transforms_path(Path(data))
    meta = load_json(path)
    file_paths, _ = check_frames(meta, path)
    for key, name in INTRINSICS.items():
        if key in meta:
            check_intrinsics(path, **{name: meta[key]})
            continue
        lacking = [fp for fp, frame in zip(file_paths, meta["frames"]) if key not in frame]
        if lacking:
            raise DataValidationError(
                f"{path} has no top-level '{key}' and {len(lacking)} of {len(file_paths)} frames have none either, "
                f"e.g. {format_list(lacking)}; nerfstudio needs {', '.join(INTRINSICS)} for every camera"
            )
        check_intrinsics(path, file_paths, **{name: [frame[key] for frame in meta["frames"]]})
    missing = [i for i, fp in enumerate(file_paths) if not (path.parent / fp).is_file()]
    return meta, missing


def filtered_scene_dir(data: Path, cache_root: Optional[Path]) -> Path:
    """``<root>/<scene>-<hash of the resolved transforms path>``; root: ``cache_root``, else
    $NG_METHODS_CACHE/nerfstudio-data, else $XDG_CACHE_HOME/ng_methods/nerfstudio-data (~/.cache by default)."""
    root = cache_root
    if root is None:
        env = os.environ.get("NG_METHODS_CACHE")
        if env is None:
            env = str(Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "ng_methods")
        root = Path(env) / "nerfstudio-data"
    resolved = transforms_path(Path(data)).resolve()
    key = hashlib.sha1(str(resolved).encode("utf-8")).hexdigest()[:10]
    return Path(root) / f"{resolved.parent.name}-{key}"


def write_filtered_scene(data: Path, meta: Dict[str, Any], drop: List[int], cache_root: Optional[Path]) -> Path:
    """A folder whose ``transforms.json`` lacks the frames ``drop`` and whose other entries link to the scene's."""
    source = transforms_path(Path(data)).resolve()
    scene = filtered_scene_dir(data, cache_root)
    scene.mkdir(parents=True, exist_ok=True)
    for entry in source.parent.iterdir():
        link = scene / entry.name
        if entry == source or link.name == "transforms.json" or link.is_symlink() or link.exists():
            continue
        link.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    drop_set = set(drop)
    dropped = {meta["frames"][i]["file_path"] for i in drop_set}
    kept = dict(meta, frames=[frame for i, frame in enumerate(meta["frames"]) if i not in drop_set])
    for key in ("train_filenames", "val_filenames", "test_filenames"):  # nerfstudio's explicit splits
        if isinstance(kept.get(key), list):
            kept[key] = [name for name in kept[key] if name not in dropped]
    target = scene / "transforms.json"
    text = json.dumps(kept, indent=2)
    if not target.is_file() or target.read_text() != text:
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(target)  # atomic: a concurrent run never reads half a file
    return scene


DECODABLE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Depth files with these suffixes are image files and are checked to decode (``.npy`` depths are not)."""

SKIP_HINT = "ng-nerfstudio-data (--pipeline.datamanager.dataparser.skip-missing-images True)"


def check_output_files(outputs: DataparserOutputs, source: Path, downscale_factor: int) -> None:
    """Check the files nerfstudio will load for one split: they exist and decode, each image has its camera's
    size (within a pixel when ``downscale_factor > 1``: ``images_<K>`` copies round either way) and each mask its
    image's size (nerfstudio asserts it when it loads them)."""
    images = [Path(p) for p in outputs.image_filenames]
    hint = f", or delete it and pass --skip-missing-images True to {SKIP_HINT} to train without it"
    sizes = check_images_decodable(images, source=source, hint=hint)
    tolerance = 0 if downscale_factor == 1 else 1
    widths = outputs.cameras.width.reshape(-1).tolist()
    heights = outputs.cameras.height.reshape(-1).tolist()
    for p, (w, h), cam_w, cam_h in zip(images, sizes, widths, heights):
        if abs(w - cam_w) > tolerance or abs(h - cam_h) > tolerance:
            scaled = f" after downscaling by {downscale_factor}" if downscale_factor != 1 else ""
            raise DataValidationError(
                f"Image {p} is {w}x{h} but its camera in {source} is {cam_w}x{cam_h} ('w' x 'h'{scaled}); resize "
                "the image or fix 'w' and 'h'"
            )
    if outputs.mask_filenames:
        masks = check_image_files(outputs.mask_filenames, source=source, what="mask")
        for mask, size, image, image_size in zip(masks, check_images_decodable(masks, source, "mask"), images, sizes):
            if size != image_size:
                raise DataValidationError(
                    f"Mask {mask} is {size[0]}x{size[1]} but its image {image} is {image_size[0]}x{image_size[1]} "
                    f"(mask_path in {source}); a mask must have its image's size"
                )
    depths = [Path(p) for p in (outputs.metadata.get("depth_filenames") or [])]
    if depths:
        check_image_files(depths, source=source, what="depth")
        check_images_decodable([p for p in depths if p.suffix.lower() in DECODABLE_SUFFIXES], source, "depth image")


def _as_user_paths(outputs: DataparserOutputs, scene: Path, data_dir: Path) -> DataparserOutputs:
    """``outputs`` with the paths under the filtered copy ``scene`` mapped to the user's ``data_dir`` (for messages;
    the copy links to the same files)."""

    def mapped(paths: Optional[Sequence[Path]]) -> Optional[List[Path]]:
        if paths is None:
            return None
        return [data_dir / Path(p).relative_to(scene) if Path(p).is_relative_to(scene) else Path(p) for p in paths]

    metadata = dict(outputs.metadata, depth_filenames=mapped(outputs.metadata.get("depth_filenames")))
    return dataclasses.replace(
        outputs, image_filenames=mapped(outputs.image_filenames), mask_filenames=mapped(outputs.mask_filenames),
        metadata=metadata,
    )


@dataclass
class NgNerfstudioDataParserConfig(NerfstudioDataParserConfig):
    """nerfstudio's ``nerfstudio-data`` config (same fields and defaults), validated at setup."""

    _target: Type = field(default_factory=lambda: NgNerfstudio)
    """target class to instantiate"""
    skip_missing_images: bool = False
    """Train on the frames whose image file exists, with one warning, when transforms.json lists images that are
    missing (instant-ngp's fox lists 67 frames and ships 50 images). False: stop with an error listing them."""
    cache_dir: Optional[Path] = None
    """Where the filtered transforms.json goes when frames are skipped; default $NG_METHODS_CACHE/nerfstudio-data,
    else ~/.cache/ng_methods/nerfstudio-data."""


class NgNerfstudio(Nerfstudio):
    """nerfstudio's ``Nerfstudio`` dataparser; validates the transforms file, optionally drops frames whose image is
    missing, then delegates."""

    config: NgNerfstudioDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train") -> DataparserOutputs:  # type: ignore[override]
        data = Path(self.config.data)
        meta, missing = validate_transforms(data)
        path = transforms_path(data)
        total = len(meta["frames"])
        present = sorted(set(range(total)) - set(missing))
        if present and self.config.downscale_factor is None:  # nerfstudio opens this one's header itself
            read_image_size(path.parent / meta["frames"][present[0]]["file_path"], path)
        if not missing:
            outputs = super()._generate_dataparser_outputs(split)
            check_output_files(outputs, path, self.downscale_factor or 1)
            return outputs
        listed = format_list([meta["frames"][i]["file_path"] for i in missing])
        if not self.config.skip_missing_images or len(missing) == total:
            hint = ("none exists" if len(missing) == total else
                    f"to train on the {total - len(missing)} frames present, pass --skip-missing-images True to "
                    + SKIP_HINT)
            raise DataValidationError(
                f"{len(missing)} of {total} image files referenced by {path} do not exist ({listed}); {hint}"
            )
        scene = write_filtered_scene(data, meta, missing, self.config.cache_dir)
        if split == "train":  # one warning per run: the train split is parsed first
            warnings.warn(
                f"{path} lists {len(missing)} frames whose images do not exist ({listed}); using the "
                f"{total - len(missing)} frames present (filtered copy: {scene / 'transforms.json'})",
                stacklevel=2,
            )
        self.config.data = scene
        try:
            outputs = super()._generate_dataparser_outputs(split)
        finally:
            self.config.data = data  # the saved config keeps pointing at the user's scene
        check_output_files(_as_user_paths(outputs, scene, path.parent), path, self.downscale_factor or 1)
        return outputs
