"""Damaged scenes stop at setup with one ``DataValidationError`` naming the file, in every dataparser we register.

Each scene is a copy of a small scene in tests/data (in tmp_path), damaged as a new user's scene gets damaged: an
image or mask cut to 500 bytes (an interrupted copy or download), an image of another size, a malformed or too
short pose file. The parser must raise before it writes anything (no cache folder, no derived file), and for a
truncated image before nerfstudio caches the images (which used to fail with ``OSError: image file is truncated``
and no file name).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import pytest
from PIL import Image

from ng_methods.data.blender import NgBlenderDataParserConfig
from ng_methods.data.dnerf import NgDNeRFDataParserConfig
from ng_methods.data.llff import LLFFDataParserConfig
from ng_methods.data.nerfstudio_data import NgNerfstudioDataParserConfig
from ng_methods.data.nonrigid import NonRigidDataParserConfig
from ng_methods.data.phototourism import PhototourismDataParserConfig
from ng_methods.data.validation import DataValidationError, check_images_decodable
from tests.conftest import DATA_DIR, make_blender_subset


def truncate(path: Path, size: int = 500) -> Path:
    path.write_bytes(path.read_bytes()[:size])
    return path


def snapshot(root: Path) -> Dict[Path, int]:
    return {p: (p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")}


@contextlib.contextmanager
def stops_naming(path: Path, root: Path, *fragments: str):
    """Expect a DataValidationError naming ``path`` (and every fragment), with nothing written under ``root``."""
    before = snapshot(root)
    with pytest.raises(DataValidationError) as info:
        yield info
    message = str(info.value)
    for expected in (str(path),) + fragments:
        assert expected in message, f"{expected!r} not in error message {message!r}"
    assert snapshot(root) == before, "the parser wrote files before failing"


# ------------------------------------------------------------------------------------------------------- scenes
def nerfstudio_scene(root: Path, count: int = 4, masks: bool = False, downscaled: bool = False) -> Path:
    """lego-100's first ``count`` train views as a nerfstudio transforms.json scene (optionally with masks made
    from the alpha channel, and an ``images_2`` copy)."""
    lego = json.loads((DATA_DIR / "lego-100" / "transforms_train.json").read_text())
    focal = 0.5 * 100 / math.tan(0.5 * lego["camera_angle_x"])
    (root / "images").mkdir(parents=True)
    frames = []
    for frame in lego["frames"][:count]:
        name = Path(frame["file_path"]).name + ".png"
        shutil.copy(DATA_DIR / "lego-100" / "train" / name, root / "images" / name)
        entry = {"file_path": f"images/{name}", "transform_matrix": frame["transform_matrix"]}
        with Image.open(root / "images" / name) as im:
            if masks:
                (root / "masks").mkdir(exist_ok=True)
                im.getchannel("A").point(lambda a: 255 if a > 0 else 0).save(root / "masks" / name)
                entry["mask_path"] = f"masks/{name}"
            if downscaled:
                (root / "images_2").mkdir(exist_ok=True)
                im.resize((50, 50)).save(root / "images_2" / name)
        frames.append(entry)
    meta = {"fl_x": focal, "fl_y": focal, "cx": 50.0, "cy": 50.0, "w": 100, "h": 100, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root


def blender(root: Path) -> Tuple[Path, Callable]:
    data = make_blender_subset(DATA_DIR / "lego-100", root / "lego", {"train": 4, "val": 1, "test": 1})
    return data / "train" / "r_1.png", lambda: NgBlenderDataParserConfig(data=data).setup().get_dataparser_outputs()


def dnerf(root: Path) -> Tuple[Path, Callable]:
    data = Path(shutil.copytree(DATA_DIR / "dnerf-lego-tiny", root / "lego"))
    return data / "train" / "r_14.png", lambda: NgDNeRFDataParserConfig(data=data).setup().get_dataparser_outputs()


def nerfstudio(root: Path) -> Tuple[Path, Callable]:
    data = nerfstudio_scene(root / "scene")
    config = NgNerfstudioDataParserConfig(data=data, cache_dir=root / "cache")
    return data / "images" / "r_2.png", lambda: config.setup().get_dataparser_outputs()


def llff(root: Path) -> Tuple[Path, Callable]:
    data = Path(shutil.copytree(DATA_DIR / "llff-fern-tiny", root / "fern"))
    config = LLFFDataParserConfig(data=data, cache_dir=root / "cache")
    return data / "images_32" / "image005.png", lambda: config.setup().get_dataparser_outputs()


def nonrigid(root: Path) -> Tuple[Path, Callable]:
    data = Path(shutil.copytree(DATA_DIR / "nonrigid-tiny", root / "nonrigid"))
    return data / "images" / "image000002.png", lambda: NonRigidDataParserConfig(data=data).setup()\
        .get_dataparser_outputs()


def phototourism(root: Path) -> Tuple[Path, Callable]:
    from tests.data_tests.test_phototourism import make_scene

    data = make_scene(root / "phototourism")
    config = PhototourismDataParserConfig(data=data)
    return data / "dense" / "images" / "photo_3.png", lambda: config.setup().get_dataparser_outputs()


def neus(root: Path) -> Tuple[Path, Callable]:
    from ng_methods.data.neus import NeuSDataParserConfig

    data = Path(shutil.copytree(DATA_DIR / "dtu-scan65-tiny", root / "scan65"))
    return data / "image" / "000003.png", lambda: NeuSDataParserConfig(data=data).setup().get_dataparser_outputs()


PARSERS = {"ng-blender-data": blender, "ng-dnerf-data": dnerf, "ng-nerfstudio-data": nerfstudio,
           "llff-data": llff, "nonrigid-data": nonrigid, "ng-phototourism-data": phototourism, "neus-data": neus}


def test_every_registered_dataparser_is_covered():
    from importlib.metadata import entry_points

    ours = {e.name for e in entry_points(group="nerfstudio.dataparser_configs") if e.value.startswith("ng_methods.")}
    assert ours == set(PARSERS)


# ------------------------------------------------------------------------------------------------ truncated files
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_truncated_image_stops_setup(tmp_path, name):
    image, parse = PARSERS[name](tmp_path)
    parse()  # the undamaged copy parses
    truncate(image)
    with stops_naming(image, tmp_path, "Cannot decode image", "truncated", "500 bytes", "copy or export it again"):
        parse()


def test_truncated_jpeg_with_intact_header_stops_llff(tmp_path):
    """JPEG: PIL reads the header of a half file and ``verify()`` passes; the missing end marker is caught."""
    data = Path(shutil.copytree(DATA_DIR / "wild-tiny", tmp_path / "wild"))
    image = sorted((data / "images").iterdir())[2]
    truncate(image, image.stat().st_size // 2)
    with stops_naming(image, tmp_path, "Cannot decode image", "poses_bounds.npy"):
        LLFFDataParserConfig(data=data, cache_dir=tmp_path / "cache").setup().get_dataparser_outputs()


def test_truncated_mask_stops_llff_before_binarising(tmp_path):
    data = Path(shutil.copytree(DATA_DIR / "wild-tiny", tmp_path / "wild"))
    mask = truncate(sorted((data / "masks").iterdir())[5])
    with stops_naming(mask, tmp_path, "Cannot decode mask", str(data / "masks"), "use_masks=False"):
        LLFFDataParserConfig(data=data, cache_dir=tmp_path / "cache").setup().get_dataparser_outputs()


def test_truncated_mask_stops_nerfstudio_data(tmp_path):
    data = nerfstudio_scene(tmp_path / "scene", masks=True)
    mask = truncate(data / "masks" / "r_1.png")
    with stops_naming(mask, tmp_path, "Cannot decode mask", str(data / "transforms.json")):
        NgNerfstudioDataParserConfig(data=data, cache_dir=tmp_path / "cache").setup().get_dataparser_outputs()


def test_nerfstudio_data_checks_the_downscaled_copy_it_loads(tmp_path):
    data = nerfstudio_scene(tmp_path / "scene", downscaled=True)
    config = NgNerfstudioDataParserConfig(data=data, downscale_factor=2, cache_dir=tmp_path / "cache")
    assert config.setup().get_dataparser_outputs().image_filenames[0].parent.name == "images_2"
    image = truncate(data / "images_2" / "r_3.png")
    with stops_naming(image, tmp_path, "Cannot decode image"):
        config.setup().get_dataparser_outputs()


def test_nerfstudio_data_skip_missing_names_the_users_file(tmp_path):
    data = nerfstudio_scene(tmp_path / "scene")
    (data / "images" / "r_0.png").unlink()
    image = truncate(data / "images" / "r_2.png")
    config = NgNerfstudioDataParserConfig(data=data, skip_missing_images=True, cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning), pytest.raises(DataValidationError) as info:
        config.setup().get_dataparser_outputs()
    assert f"Cannot decode image {image} " in str(info.value)


def test_llff_derived_folder_checks_its_sources_before_writing(tmp_path):
    data = Path(shutil.copytree(DATA_DIR / "llff-fern-tiny", tmp_path / "fern"))
    image = truncate(data / "images_32" / "image011.png")
    with stops_naming(image, tmp_path, "Cannot decode image"):
        LLFFDataParserConfig(data=data, downscale_factor=64, cache_dir=tmp_path / "cache").setup()\
            .get_dataparser_outputs()


def test_datamanager_setup_raises_before_caching_images(tmp_path):
    """What ns-train runs: the datamanager parses, then caches the images; the error comes from the parser."""
    from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig

    image, _ = blender(tmp_path)
    truncate(image)
    config = FullImageDatamanagerConfig(dataparser=NgBlenderDataParserConfig(data=image.parents[1]),
                                        cache_images="cpu")
    with pytest.raises(DataValidationError, match=str(image)):
        config.setup(device="cpu", test_mode="val")


# ------------------------------------------------------------------------------------------------ other bad scenes
def test_blender_image_of_another_size(tmp_path):
    image, parse = blender(tmp_path)
    Image.new("RGBA", (50, 50)).save(image)
    with stops_naming(image, tmp_path, "is 50x50", "100x100", "same size"):
        parse()


def test_nerfstudio_data_image_and_mask_of_another_size(tmp_path):
    data = nerfstudio_scene(tmp_path / "a", masks=True)
    Image.new("RGBA", (50, 40)).save(data / "images" / "r_3.png")
    with stops_naming(data / "images" / "r_3.png", tmp_path, "is 50x40", "camera", "100x100"):
        NgNerfstudioDataParserConfig(data=data, cache_dir=tmp_path / "cache").setup().get_dataparser_outputs()
    data = nerfstudio_scene(tmp_path / "b", masks=True)
    Image.new("L", (50, 50)).save(data / "masks" / "r_0.png")
    with stops_naming(data / "masks" / "r_0.png", tmp_path, "is 50x50", str(data / "images" / "r_0.png")):
        NgNerfstudioDataParserConfig(data=data, cache_dir=tmp_path / "cache").setup().get_dataparser_outputs()


def test_llff_poses_bounds_of_shape_5_by_15(tmp_path):
    _, parse = llff(tmp_path)
    path = tmp_path / "fern" / "poses_bounds.npy"
    np.save(path, np.load(path)[:5, :15])
    with stops_naming(path, tmp_path, "shape (5, 15)", "N x 17"):
        parse()


def test_llff_fewer_poses_than_images(tmp_path):
    _, parse = llff(tmp_path)
    path = tmp_path / "fern" / "poses_bounds.npy"
    np.save(path, np.load(path)[:5])
    with stops_naming(path, tmp_path, "5 poses", "8 images", str(tmp_path / "fern" / "images_32")):
        parse()


def test_nonrigid_fewer_poses_than_images(tmp_path):
    _, parse = nonrigid(tmp_path)
    path = tmp_path / "nonrigid" / "precomputed.json"
    meta = json.loads(path.read_text())
    meta["poses"], meta["bds"] = meta["poses"][:10], meta["bds"][:10]
    path.write_text(json.dumps(meta))
    with stops_naming(path, tmp_path, "10 poses", "12 images", "one image per pose"):
        parse()


# ------------------------------------------------------------------------------------------------ the check itself
def test_check_images_decodable(tmp_path):
    source = DATA_DIR / "lego-100" / "train" / "r_0.png"
    png = source.read_bytes()
    Image.open(source).convert("RGB").save(tmp_path / "ok.jpg", quality=90)
    jpg = (tmp_path / "ok.jpg").read_bytes()
    files = {"ok.png": png, "no_iend.png": png[:-12], "trailing.jpg": jpg + b"extra data",
             "padded.jpg": jpg + b"\0" * 9, "cut.png": png[:-100], "cut.jpg": jpg[:-2],
             "half.jpg": jpg[: len(jpg) // 2],
             "text.png": b"not an image"}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    decodable = [tmp_path / n for n in ("ok.png", "no_iend.png", "ok.jpg", "trailing.jpg", "padded.jpg")]
    assert check_images_decodable(decodable, source="src") == [(100, 100)] * 5  # all that nerfstudio can load
    for name in ("cut.png", "cut.jpg", "half.jpg", "text.png"):
        with pytest.raises(DataValidationError, match=f"Cannot decode mask {tmp_path / name} \\(referenced by src\\)"):
            check_images_decodable([tmp_path / "ok.png", tmp_path / name], source="src", what="mask")


def test_check_images_decodable_counts_and_orders_in_the_thread_pool(tmp_path):
    source = DATA_DIR / "lego-100" / "train" / "r_0.png"
    paths = [Path(shutil.copy(source, tmp_path / f"{i:02d}.png")) for i in range(40)]  # > 16 files: thread pool
    for i in (7, 21, 30):
        truncate(paths[i])
    with pytest.raises(DataValidationError) as info:
        check_images_decodable(paths, source="src", hint="; a hint")
    message = str(info.value)
    assert message.startswith(f"Cannot decode image {paths[7]} ")
    assert "3 of 40 image files are affected" in message and str(paths[30]) in message
    assert message.endswith("copy or export them again; a hint")
