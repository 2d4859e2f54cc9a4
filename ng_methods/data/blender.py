"""``ng-blender-data``: nerfstudio's Blender (NeRF-synthetic) dataparser plus input validation.

Behaviour is exactly nerfstudio's ``blender-data`` (the outputs come from
:class:`nerfstudio.data.dataparsers.blender_dataparser.Blender`): for split ``s`` it reads
``<data>/transforms_{s}.json``, the image of a frame is ``<data>/<file_path without "./">.png`` (nerfstudio always
appends ``.png``), intrinsics come from ``camera_angle_x`` and the size of the first image, cameras are
OpenGL-convention camera-to-world matrices (z-up world, as Blender writes them), the scene box is [-1.5, 1.5]^3.

``alpha_color`` (inherited): the images are RGBA. With a colour name ("white", the default, "black", ...) the
dataset composites every image over that colour. With ``None`` the RGBA images are passed through unchanged, so a
model can composite over random backgrounds itself.

What this adds: before delegating, the transforms file and everything it references is checked, and problems raise
:class:`~ng_methods.data.validation.DataValidationError` naming ``transforms_{split}.json``:

- the file is missing, is not valid JSON (line and column given) or is not an object;
- ``frames`` is missing, not a list or empty; ``camera_angle_x`` is missing or not an angle in (0, pi);
- a frame has no ``file_path`` or no ``transform_matrix``, or its matrix is not 4x4, not finite (NaN/inf), not
  rigid, or has a bottom row other than [0, 0, 0, 1];
- image files are missing (the first few are listed with the total count), cannot be decoded (truncated or
  corrupt: :func:`~ng_methods.data.validation.check_images_decodable`), or differ in size (nerfstudio uses the
  first image's size for every camera).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Type

from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.dataparsers.blender_dataparser import Blender, BlenderDataParserConfig

from ng_methods.data.validation import (
    DataValidationError,
    check_frames,
    check_image_files,
    check_images_decodable,
    check_intrinsics,
    load_json,
)

__all__ = ["NgBlenderDataParserConfig", "NgBlenderDataParser", "validate_blender_split"]


def _blender_image_path(data: Path, file_path: str) -> Path:
    """The image path nerfstudio's Blender parser uses for a frame (it always appends ``.png``)."""
    return data / Path(file_path.replace("./", "") + ".png")


def validate_blender_split(data: Path, split: str) -> Dict[str, Any]:
    """Validate ``<data>/transforms_{split}.json`` and the images it references.

    Returns:
        The parsed JSON.

    Raises:
        DataValidationError: naming the transforms file and what is wrong with it.
    """
    data = Path(data)
    if not data.is_dir():
        raise DataValidationError(f"Blender data directory {data} does not exist (or is not a directory)")
    path = data / f"transforms_{split}.json"
    meta = load_json(path)

    file_paths, _ = check_frames(meta, path, empty_hint=f"the split '{split}' has no images")
    if "camera_angle_x" not in meta:
        raise DataValidationError(
            f"{path} has no 'camera_angle_x' (the horizontal field of view in radians, from which the focal "
            "length is computed)"
        )
    check_intrinsics(path, camera_angle_x=meta["camera_angle_x"])

    image_paths = [_blender_image_path(data, fp) for fp in file_paths]
    missing_paths = [(fp, p) for fp, p in zip(file_paths, image_paths) if not p.is_file()]
    if missing_paths:
        fp, p = missing_paths[0]
        raw = data / Path(fp.replace("./", ""))
        if raw.suffix and raw.is_file():
            raise DataValidationError(
                f"{len(missing_paths)} of {len(image_paths)} image files referenced by {path} do not exist, e.g. {p}: "
                f"the Blender format appends '.png' to 'file_path', and {fp!r} already has an extension. "
                "Remove the extension from 'file_path' (or use nerfstudio-data for such files)"
            )
    check_image_files(image_paths, source=path)

    sizes = check_images_decodable(image_paths, source=path)
    for p, size in zip(image_paths, sizes):
        if size != sizes[0]:
            raise DataValidationError(
                f"Image {p} is {size[0]}x{size[1]} but {image_paths[0]} is {sizes[0][0]}x{sizes[0][1]}; all images "
                f"of {path} must have the same size (one camera_angle_x is shared by all frames)"
            )
    return meta


@dataclass
class NgBlenderDataParserConfig(BlenderDataParserConfig):
    """nerfstudio's Blender dataparser config (same fields and defaults), with input validation at setup."""

    _target: Type = field(default_factory=lambda: NgBlenderDataParser)
    """target class to instantiate"""


class NgBlenderDataParser(Blender):
    """nerfstudio's ``Blender`` dataparser; validates ``transforms_{split}.json`` and its images, then delegates.

    (Not re-decorated with ``@dataclass``: that would replace ``Blender.__init__``, which sets up ``self.data``.)
    """

    config: NgBlenderDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train") -> DataparserOutputs:  # type: ignore[override]
        validate_blender_split(self.data, split)
        return super()._generate_dataparser_outputs(split)
