"""``phototourism-data``: Phototourism scenes with NeRF-W's ``.tsv`` split (Splatfacto-W's official data).

File layout (NeRF-W's Phototourism release, e.g. ``brandenburg_gate/``)::

    <data>/dense/images/           the photos
    <data>/dense/sparse/           COLMAP model: cameras.bin, images.bin, points3D.bin
    <data>/<scene>.tsv             split file, tab separated, columns filename, id, split ("train"/"test"), dataset

Conventions (those of the official Splatfacto-W dataparser, ``splatfactow/nerfw_dataparser.py`` @119a3bf, written
here from its description, not copied):

- Rows with an empty field (NeRF-W marks photos outside the reconstruction with an empty ``id``) are dropped.
- Every remaining photo must be in ``images.bin``; cameras are pinhole (``PINHOLE`` or ``SIMPLE_PINHOLE``) with the
  intrinsics of ``cameras.bin``. COLMAP's world-to-camera poses are inverted and their camera axes flipped to
  nerfstudio's OpenGL convention.
- World frame: nerfstudio's ``auto_orient_and_center_poses`` over all photos (``orientation_method="up"``,
  ``center_method="poses"``), then the positions are divided by the largest absolute coordinate and multiplied by
  ``scale_factor`` (official 3.0). ``dataparser_transform`` / ``dataparser_scale`` record both.
- Splits: ``train`` = the tsv's train rows, ``val`` / ``test`` = its test rows, ``all`` = both. (Upstream trains
  on all rows and masks the right half of test photos in its datamanager; here that is the ``splatfacto-wild``
  datamanager option ``train_on_test_left_halves``.)
- ``points3D.bin`` (``load_3D_points``) is mapped to the same frame and given to the train split's metadata as
  ``points3D_xyz`` (float32 [N, 3]) and ``points3D_rgb`` (uint8 [N, 3]), which nerfstudio's pipeline passes to
  Gaussian models as seed points.

Bad input (no or several tsv files, missing columns, unknown split names, photos missing from the reconstruction or
from ``dense/images``, undecodable photos or photos of another size than their camera, unreadable COLMAP files)
raises one :class:`DataValidationError` naming the file.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type

import numpy as np
import torch
from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.data.utils import colmap_parsing_utils as colmap

from ng_methods.data.validation import DataValidationError, check_image_files, check_images_decodable, format_list

__all__ = ["PhototourismDataParserConfig", "Phototourism", "read_split_file", "read_colmap_points"]

TSV_COLUMNS = ("filename", "id", "split")
"""Columns the split file must have (NeRF-W's files also have ``dataset``, which is not needed)."""


def read_split_file(path: Path) -> List[Tuple[str, str]]:
    """``(filename, split)`` of every complete row of a NeRF-W ``.tsv`` split file, in file order."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataValidationError(f"Cannot read split file {path}: {error}") from None
    missing = [name for name in TSV_COLUMNS if name not in header]
    if missing:
        raise DataValidationError(
            f"Split file {path} lacks the column(s) {missing}; a NeRF-W split file is tab separated with the header "
            f"'filename<TAB>id<TAB>split<TAB>dataset' (found {list(header)})"
        )

    def complete(row: Dict[str, Optional[str]]) -> bool:
        return all(row.get(name) not in (None, "") and str(row[name]).lower() != "nan" for name in TSV_COLUMNS)

    kept = [(str(row["filename"]).strip(), str(row["split"]).strip()) for row in rows if complete(row)]
    unknown = sorted({split for _, split in kept if split not in ("train", "test")})
    if unknown:
        raise DataValidationError(f"Split file {path} has split values {unknown}; expected 'train' or 'test'")
    if not kept:
        raise DataValidationError(f"Split file {path} has no complete rows (filename, id and split all set)")
    return kept


def read_colmap_points(path: Path, transform: torch.Tensor, scale: float) -> Dict[str, torch.Tensor]:
    """COLMAP ``points3D.bin`` mapped to a dataparser's output frame: ``scale * (transform @ [xyz, 1])``.

    Returns nerfstudio's seed-point metadata: ``points3D_xyz`` (float32 [N, 3]) and ``points3D_rgb`` (uint8 [N, 3]).
    """
    if not path.is_file():
        raise DataValidationError(f"COLMAP points file {path} does not exist")
    try:
        points = colmap.read_points3D_binary(path)
    except Exception as error:  # noqa: BLE001 - struct.error, OSError, KeyError, ... for a damaged file
        raise DataValidationError(
            f"Cannot read COLMAP points file {path} ({type(error).__name__}: {error}); is it a complete "
            "COLMAP binary points3D.bin?"
        ) from None
    if not points:
        raise DataValidationError(f"COLMAP points file {path} holds no points")
    xyz = torch.from_numpy(np.stack([p.xyz for p in points.values()]).astype(np.float32))
    rgb = torch.from_numpy(np.stack([p.rgb for p in points.values()]).astype(np.uint8))
    transform = transform.float()
    xyz = (xyz @ transform[:3, :3].T + transform[:3, 3]) * float(scale)
    return {"points3D_xyz": xyz, "points3D_rgb": rgb}


@dataclass
class PhototourismDataParserConfig(DataParserConfig):
    """Phototourism scenes with a NeRF-W ``.tsv`` split (see the module docstring)."""

    _target: Type = field(default_factory=lambda: Phototourism)
    """target class to instantiate"""
    data: Path = Path("data/phototourism/brandenburg-gate")
    """Scene directory holding ``dense/`` and the ``.tsv`` split file."""
    split_file: Optional[Path] = None
    """Split file, relative to ``data`` (official: ``<data_name>.tsv``). None: the only ``*.tsv`` in ``data``."""
    images_path: Path = Path("dense/images")
    """Photo folder, relative to ``data``."""
    colmap_path: Path = Path("dense/sparse")
    """COLMAP model folder (cameras.bin, images.bin, points3D.bin), relative to ``data``."""
    scale_factor: float = 3.0
    """Camera positions are scaled to [-1, 1] (largest absolute coordinate) and then by this factor (official 3)."""
    orientation_method: Literal["pca", "up", "vertical", "none"] = "up"
    """nerfstudio's orientation of the world (official: "up")."""
    center_method: Literal["poses", "focus", "none"] = "poses"
    """nerfstudio's centring of the world (official: "poses", the mean camera position)."""
    scene_scale: float = 1.0
    """Scene box [-s, s]^3 (official 1.0; Gaussian methods only use it for the viewer)."""
    load_3D_points: bool = True
    """Give the train split COLMAP's points3D.bin (with colours) in the output frame, as Gaussian seed points."""


@dataclass
class Phototourism(DataParser):
    """Dataparser for Phototourism scenes with a NeRF-W ``.tsv`` split."""

    config: PhototourismDataParserConfig

    def _split_file(self) -> Path:
        if self.config.split_file is not None:
            return self.config.data / self.config.split_file
        found = sorted(self.config.data.glob("*.tsv"))
        if len(found) != 1:
            raise DataValidationError(
                f"Expected one NeRF-W split file (*.tsv) in {self.config.data}, found {len(found)}"
                f"{': ' + format_list(found) if found else ''}; set --split-file"
            )
        return found[0]

    def _read_model(self) -> Tuple[Dict, Dict]:
        folder = self.config.data / self.config.colmap_path
        models = []
        for name, reader in (("cameras.bin", colmap.read_cameras_binary), ("images.bin", colmap.read_images_binary)):
            path = folder / name
            if not path.is_file():
                raise DataValidationError(f"COLMAP model file {path} does not exist")
            try:
                models.append(reader(path))
            except Exception as error:  # noqa: BLE001 - damaged binary file
                raise DataValidationError(
                    f"Cannot read COLMAP model file {path} ({type(error).__name__}: {error})"
                ) from None
        return models[0], models[1]

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        split_file = self._split_file()
        rows = read_split_file(split_file)
        cams, images = self._read_model()
        by_name = {image.name: image for image in images.values()}
        absent = [name for name, _ in rows if name not in by_name]
        if absent:
            raise DataValidationError(
                f"{len(absent)} photos of split file {split_file} are not in the COLMAP model "
                f"{self.config.data / self.config.colmap_path / 'images.bin'}: {format_list(absent)}"
            )
        names = [name for name, _ in rows]
        filenames = check_image_files(
            [self.config.data / self.config.images_path / name for name in names], split_file, "image"
        )
        colmap_folder = self.config.data / self.config.colmap_path
        c2w, intrinsics = _cameras_of([by_name[name] for name in names], cams, colmap_folder)
        _check_sizes(filenames, check_images_decodable(filenames, split_file), intrinsics, split_file)
        c2w, transform = camera_utils.auto_orient_and_center_poses(
            c2w, method=self.config.orientation_method, center_method=self.config.center_method
        )
        scale = self.config.scale_factor / float(torch.max(torch.abs(c2w[:, :3, 3])).clamp_min(1e-12))
        c2w[:, :3, 3] *= scale
        idx = _split_indices([s for _, s in rows], split, split_file)
        cameras = Cameras(camera_to_worlds=c2w[idx, :3, :4], **{k: v[idx] for k, v in intrinsics.items()},
                          camera_type=CameraType.PERSPECTIVE)
        metadata: Dict[str, object] = {}
        if split == "train" and self.config.load_3D_points:
            points_path = self.config.data / self.config.colmap_path / "points3D.bin"
            metadata.update(read_colmap_points(points_path, transform, scale))
        s = self.config.scene_scale
        return DataparserOutputs(
            image_filenames=[filenames[i] for i in idx.tolist()],
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-s, -s, -s], [s, s, s]], dtype=torch.float32)),
            dataparser_scale=scale,
            dataparser_transform=transform,
            metadata=metadata,
        )


def _split_indices(splits: List[str], split: str, source: Path) -> torch.Tensor:
    wanted = {"train": ("train",), "val": ("test",), "test": ("test",), "all": ("train", "test")}
    if split not in wanted:
        raise ValueError(f"Unknown split {split!r}; expected 'train', 'val', 'test' or 'all'")
    idx = [i for i, s in enumerate(splits) if s in wanted[split]]
    if not idx:
        raise DataValidationError(f"Split file {source} has no {'/'.join(wanted[split])} rows")
    return torch.tensor(idx, dtype=torch.long)


def _check_sizes(filenames: List[Path], sizes: List[Tuple[int, int]], intrinsics: Dict, source: Path) -> None:
    """Every photo must have the size its COLMAP camera was calibrated at."""
    expected = list(zip(intrinsics["width"][:, 0].tolist(), intrinsics["height"][:, 0].tolist()))
    wrong = [f"{path} is {w}x{h}, its camera {e[0]}x{e[1]}" for path, (w, h), e in zip(filenames, sizes, expected)
             if (w, h) != tuple(e)]
    if wrong:
        raise DataValidationError(
            f"{len(wrong)} photos listed in {source} do not match their COLMAP cameras (cameras.bin): "
            f"{format_list(wrong)}; use the undistorted dense/images of the same reconstruction"
        )


def _cameras_of(images: List, cams: Dict, folder: Path) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """OpenGL camera-to-world ``[N, 4, 4]`` and pinhole intrinsics ``[N, 1]`` of COLMAP images."""
    poses, fx, fy, cx, cy, width, height = [], [], [], [], [], [], []
    for image in images:
        cam = cams.get(image.camera_id)
        if cam is None or cam.model not in ("PINHOLE", "SIMPLE_PINHOLE"):
            found = "missing" if cam is None else cam.model
            raise DataValidationError(
                f"Photo {image.name} uses camera {image.camera_id} ({found}) in {folder / 'cameras.bin'}; only "
                "undistorted PINHOLE / SIMPLE_PINHOLE cameras are supported (the dense/ model of Phototourism)"
            )
        f_x, f_y, c_x, c_y = cam.params if cam.model == "PINHOLE" else (cam.params[0], *cam.params)
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = image.qvec2rotmat(), image.tvec
        poses.append(np.linalg.inv(w2c))
        for values, value in zip((fx, fy, cx, cy, width, height), (f_x, f_y, c_x, c_y, cam.width, cam.height)):
            values.append(float(value))
    c2w = torch.from_numpy(np.stack(poses)).float()
    c2w[:, :3, 1:3] *= -1  # OpenCV camera axes (y down, z forward) -> OpenGL (y up, z backward)
    if not torch.isfinite(c2w).all() or any(not math.isfinite(v) for v in fx + fy):
        raise DataValidationError(f"Non-finite poses or focal lengths in the COLMAP model {folder}")
    as_tensor = lambda values, dtype=torch.float32: torch.tensor(values, dtype=dtype)[:, None]  # noqa: E731
    intrinsics = {"fx": as_tensor(fx), "fy": as_tensor(fy), "cx": as_tensor(cx), "cy": as_tensor(cy),
                  "width": as_tensor(width, torch.long), "height": as_tensor(height, torch.long)}
    return c2w, intrinsics
