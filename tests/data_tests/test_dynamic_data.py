"""Time-aware dataparsers (``ng-dnerf-data``, ``nonrigid-data``): times, splits, and errors naming the bad file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from ng_methods.data.dnerf import NgDNeRFDataParserConfig
from ng_methods.data.nonrigid import NonRigidDataParserConfig
from ng_methods.data.validation import DataValidationError
from ng_methods.dynamic import camera_time, camera_times, has_time
from tests.conftest import DATA_DIR


@pytest.fixture
def dnerf_scene(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA_DIR / "dnerf-lego-tiny", tmp_path / "lego"))


@pytest.fixture
def nonrigid_scene(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA_DIR / "nonrigid-tiny", tmp_path / "nonrigid"))


def _edit_json(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_dnerf_times_reach_the_cameras(dnerf_scene):
    parser = NgDNeRFDataParserConfig(data=dnerf_scene, alpha_color=None).setup()
    assert parser.includes_time
    outputs = parser.get_dataparser_outputs("train")
    meta = json.loads((dnerf_scene / "transforms_train.json").read_text())
    expected = torch.tensor([f["time"] for f in meta["frames"]])
    torch.testing.assert_close(outputs.cameras.times[:, 0], expected)
    assert outputs.alpha_color is None
    assert camera_time(outputs.cameras[2:3]) == pytest.approx(float(expected[2]))
    assert has_time(outputs.cameras) and camera_times(outputs.cameras).shape == (len(expected),)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["frames"][1].pop("time"), "have no 'time'"),
        (lambda m: m["frames"][0].__setitem__("time", 1.5), "outside [0, 1]"),
        (lambda m: m["frames"][0].__setitem__("time", "early"), "must be a finite number"),
        (lambda m: m["frames"][0].__setitem__("time", None), "must be a finite number"),
        (lambda m: m.pop("camera_angle_x"), "camera_angle_x"),
    ],
)
def test_dnerf_bad_input_names_the_file(dnerf_scene, edit, message):
    path = dnerf_scene / "transforms_train.json"
    _edit_json(path, edit)
    with pytest.raises(DataValidationError) as error:
        NgDNeRFDataParserConfig(data=dnerf_scene).setup().get_dataparser_outputs("train")
    assert message in str(error.value) and str(path) in str(error.value)


def test_dnerf_missing_split_file(dnerf_scene):
    (dnerf_scene / "transforms_val.json").unlink()
    with pytest.raises(DataValidationError, match="transforms_val.json"):
        NgDNeRFDataParserConfig(data=dnerf_scene).setup().get_dataparser_outputs("val")


def test_nonrigid_splits_and_times(nonrigid_scene):
    parser = NonRigidDataParserConfig(data=nonrigid_scene).setup()
    assert parser.includes_time
    meta = json.loads((nonrigid_scene / "precomputed.json").read_text())
    num = len(meta["poses"])
    train, val = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val")
    assert len(train.image_filenames) == num - 1 and len(val.image_filenames) == 1
    test_index = meta["i_test"]
    assert float(val.cameras.times[0]) == pytest.approx(test_index / (num - 1))
    assert val.image_filenames[0].name == sorted(p.name for p in (nonrigid_scene / "images").iterdir())[test_index]
    times = train.cameras.times[:, 0]
    assert float(times[0]) == 0.0 and float(times[-1]) == 1.0 and (times[1:] > times[:-1]).all()
    height, width, focal = meta["poses"][0][0][4], meta["poses"][0][1][4], meta["poses"][0][2][4]
    assert int(train.cameras.width[0]) == round(width) and int(train.cameras.height[0]) == round(height)
    assert float(train.cameras.fx[0]) == pytest.approx(focal)
    assert train.metadata["near_far"].shape == (num - 1, 2)

    interval = NonRigidDataParserConfig(data=nonrigid_scene, eval_mode="interval", eval_interval=4).setup()
    assert len(interval.get_dataparser_outputs("test").image_filenames) == len(range(0, num, 4))


def test_nonrigid_image_count_mismatch(nonrigid_scene):
    sorted((nonrigid_scene / "images").iterdir())[-1].unlink()
    with pytest.raises(DataValidationError) as error:
        NonRigidDataParserConfig(data=nonrigid_scene).setup().get_dataparser_outputs("train")
    assert "precomputed.json" in str(error.value) and "one image per pose" in str(error.value)


def test_nonrigid_wrong_image_size(nonrigid_scene):
    image = sorted((nonrigid_scene / "images").iterdir())[3]
    Image.new("RGB", (10, 10)).save(image)
    with pytest.raises(DataValidationError) as error:
        NonRigidDataParserConfig(data=nonrigid_scene).setup().get_dataparser_outputs("train")
    assert str(image) in str(error.value) and "10x10" in str(error.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.__setitem__("i_test", 99), "'i_test'"),
        (lambda m: m.pop("bds"), "no 'bds'"),
        (lambda m: m.__setitem__("poses", [[1, 2]]), "expected [N, 3, 5]"),
        (lambda m: m["bds"][0].__setitem__(0, -1.0), "0 < near < far"),
        (lambda m: m["poses"][2][0].__setitem__(0, float("nan")), "Non-finite"),
    ],
)
def test_nonrigid_bad_precomputed_json(nonrigid_scene, edit, message):
    path = nonrigid_scene / "precomputed.json"
    _edit_json(path, edit)
    with pytest.raises(DataValidationError) as error:
        NonRigidDataParserConfig(data=nonrigid_scene).setup().get_dataparser_outputs("train")
    assert message in str(error.value) and str(path) in str(error.value)


def test_full_image_datamanager_carries_times_to_the_model(dnerf_scene):
    """nerfstudio's FullImageDatamanager slices Cameras with their times for training and evaluation."""
    from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig

    config = FullImageDatamanagerConfig(
        dataparser=NgDNeRFDataParserConfig(data=dnerf_scene, alpha_color=None), cache_images="gpu"
    )
    datamanager = config.setup(device="cpu", test_mode="val")
    assert datamanager.includes_time
    camera, _ = datamanager.next_train(0)
    assert camera.times is not None and camera.times.shape == (1, 1)
    eval_camera, _ = datamanager.next_eval_image(0)
    assert eval_camera.times is not None
    fixed_times = [float(c.times) for c, _ in datamanager.fixed_indices_eval_dataloader]
    assert fixed_times == pytest.approx([0.0, 0.4949, 1.0], abs=1e-3)


def test_multi_image_datamanager_batches_cameras_with_times(dnerf_scene):
    from ng_methods.dynamic.datamanager import MultiImageDatamanagerConfig

    config = MultiImageDatamanagerConfig(
        dataparser=NgDNeRFDataParserConfig(data=dnerf_scene, alpha_color=None), cache_images="gpu", images_per_step=3
    )
    datamanager = config.setup(device="cpu", test_mode="val")
    seen = []
    for step in range(7):  # 21 draws from 20 images: an epoch without repeats, then a new one
        cameras, batch = datamanager.next_train(step)
        assert cameras.shape == (3,) and cameras.times.shape == (3, 1)
        assert batch["image"].shape == (3, 100, 100, 4)
        assert len(cameras.metadata["cam_idx"]) == 3
        for i, idx in enumerate(cameras.metadata["cam_idx"]):
            assert float(cameras.times[i]) == float(datamanager.train_dataset.cameras.times[idx])
        seen.extend(cameras.metadata["cam_idx"])
    assert sorted(seen[:20]) == list(range(20))
