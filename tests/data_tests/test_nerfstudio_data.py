"""``ng-nerfstudio-data``: nerfstudio's transforms.json parser with validation, and skipping frames with no image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ng_methods.data.nerfstudio_data import NgNerfstudioDataParserConfig
from ng_methods.data.validation import DataValidationError


def make_scene(root: Path, num_frames: int = 6, missing=(), **top_level) -> Path:
    """A tiny instant-ngp style scene: ``images/NNNN.png`` 8x6, cameras on a circle looking at the origin."""
    (root / "images").mkdir(parents=True)
    frames = []
    for i in range(num_frames):
        angle = 2 * np.pi * i / num_frames
        position = np.array([3 * np.cos(angle), 3 * np.sin(angle), 0.5])
        back = position / np.linalg.norm(position)  # OpenGL camera: looks along -z
        right = np.cross([0.0, 0.0, 1.0], back)
        right /= np.linalg.norm(right)
        matrix = np.eye(4)
        matrix[:3, :3] = np.stack([right, np.cross(back, right), back], 1)
        matrix[:3, 3] = position
        name = f"images/{i:04d}.png"
        if i not in missing:
            Image.fromarray(np.full((6, 8, 3), 20 * i, np.uint8)).save(root / name)
        frames.append({"file_path": name, "transform_matrix": matrix.tolist()})
    meta = {"fl_x": 10.0, "fl_y": 10.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6, "frames": frames}
    meta.update(top_level)
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def parse(scene: Path, split: str = "train", **config):
    config.setdefault("cache_dir", scene.parent / "cache")
    return NgNerfstudioDataParserConfig(data=scene, **config).setup().get_dataparser_outputs(split)


def test_valid_scene_is_parsed_as_nerfstudio_does(tmp_path):
    scene = make_scene(tmp_path / "scene")
    train, val = parse(scene, "train"), parse(scene, "val")
    assert len(train.image_filenames) + len(val.image_filenames) == 6
    assert all(Path(p).is_file() for p in train.image_filenames)


def test_missing_images_stop_with_the_files_named(tmp_path):
    scene = make_scene(tmp_path / "scene", missing=(1, 4))
    with pytest.raises(DataValidationError) as info:
        parse(scene)
    message = str(info.value)
    for expected in (str(scene / "transforms.json"), "2 of 6", "images/0001.png", "images/0004.png",
                     "--skip-missing-images True"):
        assert expected in message, message


def test_skip_missing_images_trains_on_the_rest_and_keeps_the_config(tmp_path):
    scene = make_scene(tmp_path / "scene", missing=(1, 4), train_filenames=["images/0000.png", "images/0001.png",
                                                                            "images/0002.png", "images/0003.png"],
                       val_filenames=["images/0004.png", "images/0005.png"])
    config = NgNerfstudioDataParserConfig(data=scene, skip_missing_images=True, cache_dir=tmp_path / "cache")
    parser = config.setup()
    with pytest.warns(UserWarning, match="2 frames whose images do not exist"):
        train = parser.get_dataparser_outputs("train")
    val = parser.get_dataparser_outputs("val")
    assert [Path(p).name for p in train.image_filenames] == ["0000.png", "0002.png", "0003.png"]
    assert [Path(p).name for p in val.image_filenames] == ["0005.png"]
    assert all(Path(p).resolve().parent == (scene / "images").resolve() for p in train.image_filenames)
    assert config.data == scene  # the saved config.yml names the user's scene, not the filtered copy
    assert json.loads((scene / "transforms.json").read_text())["frames"][1]["file_path"] == "images/0001.png"


def test_skip_with_no_image_at_all_is_still_an_error(tmp_path):
    scene = make_scene(tmp_path / "scene", num_frames=2, missing=(0, 1))
    with pytest.raises(DataValidationError, match="2 of 2 .* none exists"):
        parse(scene, skip_missing_images=True)


def test_missing_intrinsic_and_bad_pose_are_named(tmp_path):
    scene = make_scene(tmp_path / "a")
    meta = json.loads((scene / "transforms.json").read_text())
    del meta["fl_y"]
    (scene / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match="no top-level 'fl_y' and 6 of 6 frames have none"):
        parse(scene)

    scene = make_scene(tmp_path / "b")
    meta = json.loads((scene / "transforms.json").read_text())
    meta["frames"][2]["transform_matrix"][0][3] = float("nan")
    (scene / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataValidationError) as info:
        parse(scene)
    assert str(scene / "transforms.json") in str(info.value) and "images/0002.png" in str(info.value)
