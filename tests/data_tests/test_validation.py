"""Input validation: the checks themselves, and the errors our dataparsers raise for bad Blender / LLFF scenes."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ng_methods.data.blender import NgBlenderDataParserConfig
from ng_methods.data.llff import LLFFDataParserConfig
from ng_methods.data.validation import (
    DataValidationError,
    check_image_files,
    check_intrinsics,
    check_poses,
    load_json,
)

REPO = Path(__file__).resolve().parents[2]
LEGO = REPO / "tests" / "data" / "lego-100"
FERN = REPO / "tests" / "data" / "llff-fern-tiny"


@contextlib.contextmanager
def raises(path: Path, *fragments: str):
    """Expect a DataValidationError whose message contains the exact path and every fragment."""
    with pytest.raises(DataValidationError) as info:
        yield info
    message = str(info.value)
    for expected in (str(path),) + fragments:
        assert expected in message, f"{expected!r} not in error message {message!r}"


# ---------------------------------------------------------------------------------------------------- validation.py
def test_error_type():
    assert issubclass(DataValidationError, ValueError)


def test_load_json(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    assert load_json(good) == {"a": 1}
    with raises(tmp_path / "nope.json", "good.json"):  # missing: lists the JSON files that are there
        load_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": 1,\n  "b": \n}')
    with raises(bad, "line 4, column 1"):
        load_json(bad)
    arr = tmp_path / "list.json"
    arr.write_text("[1, 2]")
    with raises(arr, "JSON object", "list"):
        load_json(arr)


def test_check_image_files(tmp_path):
    files = [tmp_path / f"{i}.png" for i in range(10)]
    for f in files[:2]:
        f.write_bytes(b"")
    src = tmp_path / "transforms.json"
    with pytest.raises(DataValidationError) as info:
        check_image_files(files, source=src)
    msg = str(info.value)
    assert str(src) in msg and "8 of 10 image files" in msg
    assert str(files[2]) in msg and "and 3 more" in msg and str(files[0]) not in msg
    assert check_image_files(files[:2], source=src) == files[:2]


def test_check_poses(tmp_path):
    src = tmp_path / "poses.json"
    poses = np.tile(np.eye(4), (3, 1, 1))
    check_poses(poses, src)
    check_poses(torch.from_numpy(poses[:, :3]), src)
    nan = poses.copy()
    nan[1, 0, 3] = np.nan
    with raises(src, "frame 1 (b.png)"):
        check_poses(nan, src, names=["a.png", "b.png", "c.png"], what="frame")
    inf = poses.copy()
    inf[2, 1, 1] = np.inf
    with raises(src, "Non-finite", "2"):
        check_poses(inf, src)
    with raises(src, "shape (3, 4, 3)"):
        check_poses(poses[:, :, :3], src)
    scaled = poses.copy()
    scaled[0, :3, :3] *= 2.0
    with raises(src, "pose 0 (x)", "not a rotation"):
        check_poses(scaled, src, names=["x", "y", "z"])
    mirrored = poses.copy()
    mirrored[0, 0, 0] = -1.0
    with raises(src, "det = -1"):
        check_poses(mirrored, src)
    transposed = poses.copy()
    transposed[2] = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.5, 1, 2, 1]])
    with raises(src, "bottom row", "transposed"):
        check_poses(transposed, src)


def test_check_intrinsics(tmp_path):
    src = tmp_path / "cams.json"
    check_intrinsics(src, fx=100.0, fy=np.array([100.0, 90.0]), cx=-3.0, cy=None, width=10, height=10)
    check_intrinsics(src, camera_angle_x=0.69)
    with raises(src, "'fx'", "positive and finite", "-1"):
        check_intrinsics(src, fx=-1.0)
    with raises(src, "'focal'", "camera 1 (b)"):
        check_intrinsics(src, ["a", "b"], focal=[100.0, np.nan])
    with raises(src, "'cx'", "finite"):
        check_intrinsics(src, cx=float("inf"))
    with raises(src, "'camera_angle_x'", "(0, pi)"):
        check_intrinsics(src, camera_angle_x=4.0)
    with raises(src, "'width'", "must be a number"):
        check_intrinsics(src, width="wide")


# ---------------------------------------------------------------------------------------------------- blender
def test_ng_blender_matches_nerfstudio_blender():
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    for split in ("train", "val", "test"):
        ours = NgBlenderDataParserConfig(data=LEGO).setup().get_dataparser_outputs(split)
        theirs = BlenderDataParserConfig(data=LEGO).setup().get_dataparser_outputs(split)
        assert ours.image_filenames == theirs.image_filenames
        for attr in ("camera_to_worlds", "fx", "fy", "cx", "cy", "width", "height"):
            assert torch.equal(getattr(ours.cameras, attr), getattr(theirs.cameras, attr)), attr
        assert torch.equal(ours.alpha_color, theirs.alpha_color)
        assert torch.equal(ours.scene_box.aabb, theirs.scene_box.aabb)
    assert len(ours.image_filenames) == 25 and ours.cameras.width[0].item() == 100


def test_ng_blender_alpha_color():
    from nerfstudio.data.datasets.base_dataset import InputDataset

    rgba = NgBlenderDataParserConfig(data=LEGO, alpha_color=None).setup().get_dataparser_outputs("val")
    assert rgba.alpha_color is None
    image = InputDataset(rgba)[0]["image"]
    assert image.shape == (100, 100, 4)  # kept RGBA: the model composites over its own (random) background
    black = NgBlenderDataParserConfig(data=LEGO, alpha_color="black").setup().get_dataparser_outputs("val")
    assert torch.equal(black.alpha_color, torch.zeros(3))
    composited = InputDataset(black)[0]["image"]
    assert composited.shape == (100, 100, 3)
    torch.testing.assert_close(composited, image[..., :3] * image[..., 3:])


@pytest.fixture
def lego_copy(tmp_path) -> Path:
    """lego-100 with two train images (r_0, r_1) and a matching transforms_train.json."""
    data = tmp_path / "lego"
    (data / "train").mkdir(parents=True)
    meta = json.loads((LEGO / "transforms_train.json").read_text())
    meta["frames"] = meta["frames"][:2]
    for frame in meta["frames"]:
        name = frame["file_path"].replace("./", "") + ".png"
        shutil.copy(LEGO / name, data / name)
    (data / "transforms_train.json").write_text(json.dumps(meta, indent=1))
    return data


def _parse_lego(data: Path, split: str = "train"):
    return NgBlenderDataParserConfig(data=data).setup().get_dataparser_outputs(split)


def _edit(data: Path, fn) -> Path:
    path = data / "transforms_train.json"
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta, indent=1))
    return path


def test_blender_copy_parses(lego_copy):
    out = _parse_lego(lego_copy)
    assert [p.name for p in out.image_filenames] == ["r_0.png", "r_1.png"]


def test_blender_missing_image(lego_copy):
    (lego_copy / "train" / "r_1.png").unlink()
    with raises(lego_copy / "transforms_train.json", "1 of 2 image files", str(lego_copy / "train" / "r_1.png")):
        _parse_lego(lego_copy)


def test_blender_file_path_with_extension(lego_copy):
    path = _edit(lego_copy, lambda m: m["frames"][0].update(file_path="./train/r_0.png"))
    with raises(path, "appends '.png'", "'./train/r_0.png'"):
        _parse_lego(lego_copy)


def test_blender_malformed_json(lego_copy):
    path = lego_copy / "transforms_train.json"
    path.write_text(path.read_text()[:-3])
    with raises(path, "Invalid JSON", "line"):
        _parse_lego(lego_copy)


def test_blender_missing_transforms(lego_copy):
    with raises(lego_copy / "transforms_val.json", "File not found", "transforms_train.json"):
        _parse_lego(lego_copy, "val")


def test_blender_missing_frames(lego_copy):
    path = _edit(lego_copy, lambda m: m.pop("frames"))
    with raises(path, "no 'frames'", "camera_angle_x"):
        _parse_lego(lego_copy)


def test_blender_missing_camera_angle(lego_copy):
    path = _edit(lego_copy, lambda m: m.pop("camera_angle_x"))
    with raises(path, "no 'camera_angle_x'"):
        _parse_lego(lego_copy)


def test_blender_frame_without_file_path(lego_copy):
    path = _edit(lego_copy, lambda m: m["frames"][1].pop("file_path"))
    with raises(path, "Frame 1", "'file_path'"):
        _parse_lego(lego_copy)


def test_blender_frame_without_matrix(lego_copy):
    path = _edit(lego_copy, lambda m: m["frames"][0].pop("transform_matrix"))
    with raises(path, "Frame 0", "'transform_matrix'"):
        _parse_lego(lego_copy)


def test_blender_non_4x4_matrix(lego_copy):
    path = _edit(lego_copy, lambda m: m["frames"][1].update(transform_matrix=m["frames"][1]["transform_matrix"][:3]))
    with raises(path, "frame 1 (./train/r_1)", "shape (3, 4)", "4x4"):
        _parse_lego(lego_copy)


def test_blender_nan_pose(lego_copy):
    def corrupt(meta):
        meta["frames"][1]["transform_matrix"][0][3] = float("nan")  # json.dumps writes NaN, json.load reads it

    path = _edit(lego_copy, corrupt)
    with raises(path, "Non-finite", "frame 1 (./train/r_1)"):
        _parse_lego(lego_copy)


# ---------------------------------------------------------------------------------------------------- llff
@pytest.fixture
def fern_copy(tmp_path) -> Path:
    data = tmp_path / "fern"
    shutil.copytree(FERN, data)
    return data


def _parse_llff(data: Path):
    cache = data.parent / "cache"
    return LLFFDataParserConfig(data=data, cache_dir=cache).setup().get_dataparser_outputs("train")


def test_llff_copy_parses(fern_copy):
    assert len(_parse_llff(fern_copy).image_filenames) == 7


def test_llff_missing_poses_file(fern_copy):
    (fern_copy / "poses_bounds.npy").unlink()
    with raises(fern_copy / "poses_bounds.npy", "File not found", "images_32"):
        _parse_llff(fern_copy)


def test_llff_nan_row(fern_copy):
    path = fern_copy / "poses_bounds.npy"
    arr = np.load(path)
    arr[2, 3] = np.nan  # translation x of row 2 (image005.png)
    np.save(path, arr)
    with raises(path, "Non-finite", "image 2 (image005.png)"):
        _parse_llff(fern_copy)


def test_llff_bad_bounds(fern_copy):
    path = fern_copy / "poses_bounds.npy"
    arr = np.load(path)
    arr[4, 15] = -1.0
    np.save(path, arr)
    with raises(path, "row 4 (image011.png)", "0 < near < far"):
        _parse_llff(fern_copy)


def test_llff_wrong_column_count(fern_copy):
    path = fern_copy / "poses_bounds.npy"
    np.save(path, np.load(path)[:, :15])
    with raises(path, "shape (8, 15)", "N x 17"):
        _parse_llff(fern_copy)


def test_llff_count_mismatch(fern_copy):
    (fern_copy / "images_32" / "image019.png").unlink()
    with raises(fern_copy / "poses_bounds.npy", "8 poses", str(fern_copy / "images_32"), "7 images"):
        _parse_llff(fern_copy)


def test_llff_missing_image_folder(fern_copy):
    shutil.rmtree(fern_copy / "images_32")
    with raises(fern_copy, "No image folder", "images_<K>", "poses_bounds.npy"):
        _parse_llff(fern_copy)


def test_llff_missing_requested_folder(fern_copy):
    with raises(fern_copy, "downscale_factor=3", "images_3", "available factors: 32"):
        LLFFDataParserConfig(data=fern_copy, downscale_factor=3, cache_dir=fern_copy.parent / "c").setup()\
            .get_dataparser_outputs("train")
