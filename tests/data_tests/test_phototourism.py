"""``phototourism-data`` on a generated tiny scene (8 photos on a ring, a NeRF-W .tsv, a tiny COLMAP model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ng_methods.data.phototourism import PhototourismDataParserConfig, read_colmap_points
from ng_methods.data.validation import DataValidationError
from tests.data_tests.colmap_writer import ring_of_cameras, write_cameras, write_images, write_points

WIDTH, HEIGHT, FOCAL = 32, 24, 28.0
NAMES = [f"photo_{i}.png" for i in range(8)]
TEST = {"photo_2.png", "photo_6.png"}
HEADER = "filename\tid\tsplit\tdataset\n"


def _tsv(rows) -> str:
    return HEADER + "".join(f"{name}\t{i}\t{split}\tscene\n" for i, (name, split) in enumerate(rows))


def make_scene(root: Path) -> Path:
    """dense/images (8 PNGs), dense/sparse (PINHOLE cameras on a ring, 20 coloured points), scene.tsv."""
    images, sparse = root / "dense" / "images", root / "dense" / "sparse"
    images.mkdir(parents=True)
    sparse.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in NAMES:  # noise, so that a PNG is a few KB (the corrupt-file tests cut it to 500 bytes)
        Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(images / name)
    centers, w2cs = ring_of_cameras(len(NAMES))
    write_cameras(sparse / "cameras.bin", WIDTH, HEIGHT, [FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2])
    write_images(sparse / "images.bin", NAMES, w2cs)
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-1, 1, (12, 3)), centers])
    write_points(sparse / "points3D.bin", points, rng.integers(0, 256, (20, 3)))
    rows = [(name, "test" if name in TEST else "train") for name in NAMES]
    (root / "scene.tsv").write_text(_tsv(rows) + "not_reconstructed.jpg\t\ttrain\tscene\n")  # empty id: dropped
    return root


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return make_scene(tmp_path / "scene")


def parse(data: Path, split: str = "train", **kwargs):
    return PhototourismDataParserConfig(data=data, **kwargs).setup().get_dataparser_outputs(split)


def test_splits_follow_the_tsv(scene):
    train, test = parse(scene), parse(scene, "test")
    assert [p.name for p in train.image_filenames] == [n for n in NAMES if n not in TEST]
    assert [p.name for p in test.image_filenames] == [n for n in NAMES if n in TEST]
    assert len(parse(scene, "all").image_filenames) == 8
    assert (train.cameras.width == WIDTH).all() and (train.cameras.fx == FOCAL).all()
    assert "points3D_xyz" in train.metadata and "points3D_xyz" not in test.metadata


def test_official_pose_scale_and_points_in_the_same_frame(scene):
    out = parse(scene, "all")
    positions = out.cameras.camera_to_worlds[:, :, 3]
    assert positions.abs().max() == pytest.approx(3.0, rel=1e-5)  # scaled to [-1, 1], then x scale_factor 3
    points = parse(scene).metadata["points3D_xyz"]
    # the last 8 COLMAP points were written at the camera centres: they land on the output camera positions
    torch.testing.assert_close(points[12:], positions, atol=1e-4, rtol=0)


def test_points_project_to_the_same_pixels_as_in_colmap(scene):
    """COLMAP's projection (OpenCV camera) of a point equals ours (OpenGL camera) of the mapped point."""
    out = parse(scene, "all")
    _, w2cs = ring_of_cameras(len(NAMES))
    world = np.array([0.3, -0.2, 0.4])
    mapped = read_colmap_points(scene / "dense/sparse/points3D.bin", out.dataparser_transform, out.dataparser_scale)
    ours_point = (torch.tensor(world, dtype=torch.float32) @ out.dataparser_transform[:3, :3].T
                  + out.dataparser_transform[:3, 3]) * out.dataparser_scale
    assert mapped["points3D_xyz"].shape == (20, 3)
    for i, w2c in enumerate(w2cs):
        local = w2c[:3, :3] @ world + w2c[:3, 3]
        expected = [FOCAL * local[0] / local[2] + WIDTH / 2, FOCAL * local[1] / local[2] + HEIGHT / 2]
        c2w = out.cameras.camera_to_worlds[i]
        cam = (ours_point - c2w[:, 3]) @ c2w[:, :3]  # OpenGL: x right, y up, looking along -z
        got = [FOCAL * cam[0] / -cam[2] + WIDTH / 2, FOCAL * -cam[1] / -cam[2] + HEIGHT / 2]
        np.testing.assert_allclose(got, expected, atol=1e-3)


def test_point_colours_are_kept(scene):
    rgb = parse(scene).metadata["points3D_rgb"]
    assert rgb.dtype == torch.uint8 and rgb.shape == (20, 3)
    expected = np.random.default_rng(0)
    expected.uniform(-1, 1, (12, 3))
    np.testing.assert_array_equal(rgb.numpy(), expected.integers(0, 256, (20, 3)))


def test_missing_tsv_column_names_the_file(scene):
    (scene / "scene.tsv").write_text("filename\tid\tdataset\nphoto_0.png\t0\tscene\n")
    with pytest.raises(DataValidationError, match=r"scene\.tsv.*split"):
        parse(scene)


def test_missing_image_names_the_file(scene):
    (scene / "dense/images/photo_3.png").unlink()
    with pytest.raises(DataValidationError, match=r"photo_3\.png"):
        parse(scene)


def test_unreadable_points_names_the_file(scene):
    path = scene / "dense/sparse/points3D.bin"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataValidationError, match=r"points3D\.bin"):
        parse(scene)
    assert len(parse(scene, load_3D_points=False).image_filenames) == 6


def test_photo_outside_the_reconstruction_and_bad_split_values(scene):
    (scene / "scene.tsv").write_text(_tsv([("photo_0.png", "train"), ("ghost.png", "train")]))
    with pytest.raises(DataValidationError, match=r"ghost\.png"):
        parse(scene)
    (scene / "scene.tsv").write_text(_tsv([("photo_0.png", "validation")]))
    with pytest.raises(DataValidationError, match=r"scene\.tsv.*validation"):
        parse(scene)


def test_split_file_must_be_unambiguous(scene):
    (scene / "other.tsv").write_text(HEADER)
    with pytest.raises(DataValidationError, match="found 2"):
        parse(scene)
    assert len(parse(scene, split_file=Path("scene.tsv")).image_filenames) == 6


def test_photo_of_another_size_names_the_file(scene):
    Image.new("RGB", (WIDTH + 2, HEIGHT)).save(scene / "dense/images/photo_4.png")
    with pytest.raises(DataValidationError, match=r"photo_4\.png is 34x24, its camera 32x24"):
        parse(scene)


def test_distorted_cameras_are_rejected(scene):
    write_cameras(scene / "dense/sparse/cameras.bin", WIDTH, HEIGHT, [FOCAL, FOCAL, 16, 12, 0.1, 0, 0, 0], model_id=4)
    with pytest.raises(DataValidationError, match=r"cameras\.bin.*PINHOLE"):
        parse(scene)
