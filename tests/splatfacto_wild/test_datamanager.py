"""Splatfacto-W's datamanager: COLMAP seed points for LLFF collections and the official left-half protocol."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ng_methods.data.llff import LLFFDataParserConfig
from ng_methods.data.validation import DataValidationError
from ng_methods.splatfacto_wild.datamanager import APPEARANCE_INDEX, SplatfactoWildDatamanagerConfig
from tests.conftest import DATA_DIR
from tests.data_tests.colmap_writer import write_points


@pytest.fixture
def wild_tiny(tmp_path: Path) -> Path:
    """The 8-photo statue copy with a sparse/0/points3D.bin holding the LLFF-frame camera centres."""
    data = tmp_path / "wild-tiny"
    shutil.copytree(DATA_DIR / "wild-tiny", data)
    centres = np.load(data / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)[:, :, 3]
    (data / "sparse" / "0").mkdir(parents=True)
    write_points(data / "sparse/0/points3D.bin", centres, np.tile([[10, 20, 30]], (len(centres), 1)))
    return data


def setup(data: Path, tmp_path: Path, **kwargs):
    dataparser = LLFFDataParserConfig(data=data, use_masks=False, holdout_every=4, cache_dir=tmp_path / "cache")
    config = SplatfactoWildDatamanagerConfig(dataparser=dataparser, cache_images_type="uint8", **kwargs)
    return config.setup(device="cpu")


def test_llff_points_are_mapped_like_the_poses(wild_tiny, tmp_path):
    manager = setup(wild_tiny, tmp_path)
    metadata = manager.train_dataparser_outputs.metadata
    all_cameras = LLFFDataParserConfig(data=wild_tiny, use_masks=False, cache_dir=tmp_path / "cache").setup()
    positions = all_cameras.get_dataparser_outputs("all").cameras.camera_to_worlds[:, :, 3]
    torch.testing.assert_close(metadata["points3D_xyz"], positions, atol=1e-4, rtol=0)
    assert metadata["points3D_rgb"].dtype == torch.uint8 and (metadata["points3D_rgb"][:, 2] == 30).all()
    assert len(manager.train_dataset) == 6  # no test photos in training by default


def test_missing_points_file_keeps_random_init_and_a_broken_one_fails(wild_tiny, tmp_path):
    (wild_tiny / "sparse/0/points3D.bin").write_bytes(b"\x05\x00")
    with pytest.raises(DataValidationError, match=r"points3D\.bin"):
        setup(wild_tiny, tmp_path)
    shutil.rmtree(wild_tiny / "sparse")
    assert "points3D_xyz" not in setup(wild_tiny, tmp_path).train_dataparser_outputs.metadata


def test_official_protocol_trains_on_test_left_halves(wild_tiny, tmp_path):
    manager = setup(wild_tiny, tmp_path, train_on_test_left_halves=True)
    assert manager.num_train_photos == 6 and len(manager.train_dataset) == 8
    eval_names = [p.name for p in manager.eval_dataset.image_filenames]
    assert [p.name for p in manager.train_dataset.image_filenames[6:]] == eval_names
    masks = {}
    for step in range(8):
        camera, data = manager.next_train(step)
        masks[int(camera.metadata["cam_idx"])] = data.get("mask")
    assert all(masks[i] is None for i in range(6))
    for i in (6, 7):
        width = masks[i].shape[1]
        assert masks[i][:, : width // 2].all() and not masks[i][:, width // 2 :].any()
    tags = [camera.metadata[APPEARANCE_INDEX] for camera, _ in manager.fixed_indices_eval_dataloader]
    assert tags == [6, 7]
    camera, _ = manager.next_eval_image(0)
    assert camera.metadata[APPEARANCE_INDEX] in (6, 7)
    # test photos of the merged training set keep their own cameras
    torch.testing.assert_close(manager.train_dataset.cameras.camera_to_worlds[6:],
                               manager.eval_dataset.cameras.camera_to_worlds)


def test_phototourism_points_come_from_the_dataparser(tmp_path):
    from ng_methods.data.phototourism import PhototourismDataParserConfig
    from tests.data_tests.test_phototourism import make_scene

    data = make_scene(tmp_path / "scene")
    config = SplatfactoWildDatamanagerConfig(dataparser=PhototourismDataParserConfig(data=data),
                                             train_on_test_left_halves=True)
    manager = config.setup(device="cpu")
    assert manager.num_train_photos == 6 and len(manager.train_dataset) == 8
    assert manager.train_dataparser_outputs.metadata["points3D_xyz"].shape == (20, 3)
    assert [camera.metadata[APPEARANCE_INDEX] for camera, _ in manager.fixed_indices_eval_dataloader] == [6, 7]
