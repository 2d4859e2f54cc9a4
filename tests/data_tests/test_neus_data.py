"""``neus-data`` (NeuS/IDR layout) on the tiny DTU scan 65 copy in tests/data (scripts/make_neus_test_data.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ng_methods.data.neus import NeuSDataParserConfig, holdout_split
from ng_methods.data.neus_cameras import compose_projection, decompose_projection, opencv_to_opengl
from ng_methods.data.validation import DataValidationError

SCENE = Path(__file__).resolve().parents[1] / "data" / "dtu-scan65-tiny"
NUM_VIEWS = 8
WIDTH, HEIGHT = 100, 75


def outputs(data: Path = SCENE, split: str = "train", **kwargs):
    return NeuSDataParserConfig(data=data, **kwargs).setup().get_dataparser_outputs(split)


@pytest.fixture(scope="module")
def scene():
    return outputs()


@pytest.fixture
def scene_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SCENE, tmp_path / "scan65"))


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) >= 128


def rays(cameras, view: int, rows_cols: np.ndarray):
    """Origins and unit directions of nerfstudio's rays through pixel centres (row + 0.5, col + 0.5)."""
    coords = torch.from_numpy(rows_cols.astype(np.float32)) + 0.5
    bundle = cameras.generate_rays(camera_indices=torch.full((len(coords), 1), view), coords=coords)
    return bundle.origins, bundle.directions / bundle.directions.norm(dim=-1, keepdim=True)


def hits_unit_sphere(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    b = (origins * directions).sum(-1)
    return b * b - ((origins * origins).sum(-1) - 1.0) > 0


# ------------------------------------------------------------------------------------------------- camera maths
def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("scale", [1.0, 37.5, -2.0])
def test_projection_round_trip(scale):
    rng = np.random.default_rng(0)
    for _ in range(5):
        k = np.array([[rng.uniform(100, 2000), rng.uniform(-2, 2), rng.uniform(0, 800)],
                      [0.0, rng.uniform(100, 2000), rng.uniform(0, 600)], [0.0, 0.0, 1.0]])
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = random_rotation(rng)
        world_to_camera[:3, 3] = rng.normal(size=3) * 3
        k_out, camera_to_world = decompose_projection(scale * compose_projection(k, world_to_camera))
        np.testing.assert_allclose(k_out, k, rtol=1e-9, atol=1e-7)
        np.testing.assert_allclose(camera_to_world, np.linalg.inv(world_to_camera), atol=1e-9)


def test_decomposition_matches_opencv_as_neus_uses_it():
    cv2 = pytest.importorskip("cv2")
    cameras = np.load(SCENE / "cameras_sphere.npz")
    for i in range(NUM_VIEWS):
        projection = (cameras[f"world_mat_{i}"] @ cameras[f"scale_mat_{i}"])[:3]
        k, camera_to_world = decompose_projection(projection)
        k_cv, rotation_cv, centre_cv = cv2.decomposeProjectionMatrix(projection)[:3]
        np.testing.assert_allclose(k, k_cv / k_cv[2, 2], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(camera_to_world[:3, :3], rotation_cv.T, atol=1e-9)
        np.testing.assert_allclose(camera_to_world[:3, 3], centre_cv[:3, 0] / centre_cv[3, 0], atol=1e-9)


def test_opencv_to_opengl_flips_y_and_z():
    pose = opencv_to_opengl(np.eye(4))
    np.testing.assert_array_equal(np.diag(pose), [1.0, -1.0, -1.0, 1.0])


def test_rays_project_back_to_their_pixel(scene):
    """A point on nerfstudio's ray through pixel (row, col), mapped to world space with scale_mat and projected with
    the file's world_mat, lands on that pixel's centre."""
    npz = np.load(SCENE / "cameras_sphere.npz")
    for view, (row, col) in [(0, (20, 30)), (5, (70, 3)), (7, (40, 95))]:
        origin, direction = rays(scene.cameras, view, np.array([[row, col]]))
        for depth in (2.5, 4.0):
            point = (origin[0] + depth * direction[0]).double().numpy()
            world = npz[f"scale_mat_{view}"] @ np.append(point, 1.0)
            u, v, w = (npz[f"world_mat_{view}"] @ world)[:3]
            assert w > 0  # in front of the camera
            np.testing.assert_allclose([u / w, v / w], [col + 0.5, row + 0.5], atol=2e-3)


# ------------------------------------------------------------------------------------------------------ geometry
def test_outputs_and_metadata(scene):
    assert scene.cameras.shape == (NUM_VIEWS,)
    assert (scene.cameras.width == WIDTH).all() and (scene.cameras.height == HEIGHT).all()
    assert [p.name for p in scene.image_filenames] == [f"{i:06d}.png" for i in range(NUM_VIEWS)]
    assert scene.mask_filenames is None  # masks must not restrict pixel sampling
    masks = scene.metadata["fg_mask_filenames"]
    assert [p.name for p in masks] == [f"{i:03d}.png" for i in range(NUM_VIEWS)]
    scale_mat = scene.metadata["scale_mat"]
    assert scale_mat.dtype == np.float64 and scale_mat.shape == (4, 4)
    np.testing.assert_allclose(scale_mat, np.load(SCENE / "cameras_sphere.npz")["scale_mat_0"])
    torch.testing.assert_close(scene.scene_box.aabb, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    torch.testing.assert_close(scene.dataparser_transform, torch.eye(4)[:3])
    assert scene.dataparser_scale == 1.0


def test_cameras_outside_unit_sphere_looking_at_origin(scene):
    c2w = scene.cameras.camera_to_worlds
    centres = c2w[:, :, 3]
    assert (centres.norm(dim=-1) > 1.5).all()
    rotations = c2w[:, :, :3]
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), torch.eye(3).expand(NUM_VIEWS, 3, 3),
                               atol=1e-5, rtol=0)
    forward = -rotations[:, :, 2]  # OpenGL: the camera looks along -z
    to_origin = -centres / centres.norm(dim=-1, keepdim=True)
    assert ((forward * to_origin).sum(-1) > 0.95).all()


def test_mask_silhouettes_are_inside_the_unit_sphere(scene):
    corners = np.array([[0, 0], [0, WIDTH - 1], [HEIGHT - 1, 0], [HEIGHT - 1, WIDTH - 1]])
    corner_hits = []
    for view, mask_path in enumerate(scene.metadata["fg_mask_filenames"]):
        foreground = np.argwhere(read_mask(mask_path))
        assert 0.1 < len(foreground) / (WIDTH * HEIGHT) < 0.9
        assert hits_unit_sphere(*rays(scene.cameras, view, foreground)).all()
        origin, direction = rays(scene.cameras, view, foreground.mean(axis=0, keepdims=True))
        closest = origin[0] - (origin[0] @ direction[0]) * direction[0]
        assert closest.norm() < 0.2  # the silhouette's centre is the object's, at the origin
        corner_hits.append(hits_unit_sphere(*rays(scene.cameras, view, corners)))
    assert torch.cat(corner_hits).float().mean() < 0.25


# ---------------------------------------------------------------------------------------------- splits, downscale
def test_holdout_splits():
    assert len(holdout_split(49, 0, "train")) == 49
    np.testing.assert_array_equal(holdout_split(10, 8, "val"), [0, 8])
    train, val = outputs(holdout_every=3), outputs(split="val", holdout_every=3)
    assert [p.name for p in val.image_filenames] == ["000000.png", "000003.png", "000006.png"]
    assert len(train.image_filenames) == 5 and not set(train.image_filenames) & set(val.image_filenames)
    assert [p.name for p in val.metadata["fg_mask_filenames"]] == ["000.png", "003.png", "006.png"]
    neus2 = outputs(split="val", eval_views=(2, 5, 13))  # past-the-end indices are ignored, as in NeuS2's converter
    assert [p.name for p in neus2.image_filenames] == ["000002.png", "000005.png"]
    assert len(outputs(eval_views=(2, 5, 13)).image_filenames) == 6
    with pytest.raises(DataValidationError, match="eval_views"):
        outputs(eval_views=(8, 13))
    every = outputs(split="test")
    assert every.image_filenames == outputs().image_filenames  # holdout_every=0: eval = the training views


def test_downscale(scene, tmp_path):
    small = outputs(downscale_factor=2, cache_dir=tmp_path)
    assert (small.cameras.width == 50).all() and (small.cameras.height == 38).all()
    torch.testing.assert_close(small.cameras.fx, scene.cameras.fx * 0.5)
    torch.testing.assert_close(small.cameras.cy, scene.cameras.cy * 38 / 75)
    assert all(tmp_path in p.parents for p in small.image_filenames + small.metadata["fg_mask_filenames"])
    for view, (image, mask) in enumerate(zip(small.image_filenames, small.metadata["fg_mask_filenames"])):
        with Image.open(image) as im, Image.open(mask) as m:
            assert im.size == (50, 38) and m.size == (50, 38)
            assert set(np.unique(np.asarray(m)).tolist()) == {0, 255}
        assert hits_unit_sphere(*rays(small.cameras, view, np.argwhere(read_mask(mask)))).float().mean() > 0.99


# ----------------------------------------------------------------------------------------------------- datamanager
def test_datamanager_batches_carry_aligned_fg_mask():
    from ng_methods.data.neus_dataset import NeuSDataManagerConfig, NeuSDataset

    config = NeuSDataManagerConfig(
        dataparser=NeuSDataParserConfig(data=SCENE, holdout_every=4), train_num_rays_per_batch=2048
    )
    datamanager = config.setup(device="cpu")
    assert isinstance(datamanager.train_dataset, NeuSDataset)
    masks = [read_mask(p) for p in outputs().metadata["fg_mask_filenames"]]
    ray_bundle, batch = datamanager.next_train(0)
    assert batch["fg_mask"].shape == (2048, 1) and batch["fg_mask"].dtype == torch.float32
    view, row, col = batch["indices"].T.numpy()  # view: index into the train split
    train_views = holdout_split(NUM_VIEWS, 4, "train")
    expected = np.array([masks[train_views[v]][r, c] for v, r, c in zip(view, row, col)], dtype=np.float32)
    np.testing.assert_array_equal(batch["fg_mask"][:, 0].numpy(), expected)
    with Image.open(SCENE / "image" / f"{train_views[view[0]]:06d}.png") as im:  # the image at the same pixel
        np.testing.assert_allclose(batch["image"][0].numpy(), np.asarray(im)[row[0], col[0]] / 255.0, atol=1e-6)
    assert 0.5 < 1.0 - expected.mean() < 0.85  # background is sampled too (about 2/3 of the pixels)
    sphere = hits_unit_sphere(ray_bundle.origins, ray_bundle.directions / ray_bundle.directions.norm(dim=-1,
                                                                                                     keepdim=True))
    assert sphere[torch.from_numpy(expected > 0)].all()

    camera, eval_batch = datamanager.next_eval_image(0)
    view = int(eval_batch["image_idx"])
    assert eval_batch["fg_mask"].shape == (HEIGHT, WIDTH, 1)
    np.testing.assert_array_equal(eval_batch["fg_mask"][..., 0].numpy(), masks[view * 4].astype(np.float32))


def test_dataset_resizes_fg_mask_with_camera_res_scale_factor():
    from ng_methods.data.neus_dataset import NeuSDataset

    dataset = NeuSDataset(outputs(), scale_factor=0.5)
    item = dataset[2]
    assert item["image"].shape[:2] == item["fg_mask"].shape[:2] == (37, 50)
    assert set(item["fg_mask"].unique().tolist()) == {0.0, 1.0}


# ------------------------------------------------------------------------------------------------------ bad input
def rewrite_cameras(data: Path, **changes) -> None:
    """Rewrite cameras_sphere.npz with ``changes`` (key -> array, or None to drop the key)."""
    arrays = dict(np.load(data / "cameras_sphere.npz"))
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(data / "cameras_sphere.npz", **arrays)


def expect_error(data: Path, *fragments: str) -> None:
    with pytest.raises(DataValidationError) as info:
        outputs(data)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_missing_cameras_file(scene_copy):
    (scene_copy / "cameras_sphere.npz").unlink()
    expect_error(scene_copy, str(scene_copy / "cameras_sphere.npz"), "does not exist")


def test_missing_camera_keys(scene_copy):
    rewrite_cameras(scene_copy, world_mat_3=None, scale_mat_5=None)
    expect_error(scene_copy, "cameras_sphere.npz", "world_mat_3", "scale_mat_5")


def test_image_mask_count_mismatch(scene_copy):
    (scene_copy / "mask" / "004.png").unlink()
    expect_error(scene_copy, str(scene_copy / "image"), "8 images", str(scene_copy / "mask"), "7 masks")


def test_singular_and_non_finite_matrices(scene_copy):
    singular = np.load(scene_copy / "cameras_sphere.npz")["world_mat_2"].copy()
    singular[2, :3] = singular[0, :3]
    rewrite_cameras(scene_copy, world_mat_2=singular)
    expect_error(scene_copy, "world_mat_2", "singular", "cameras_sphere.npz")
    non_finite = np.eye(4)
    non_finite[0, 3] = np.nan
    original = np.load(SCENE / "cameras_sphere.npz")["world_mat_2"]
    rewrite_cameras(scene_copy, world_mat_2=original, scale_mat_6=non_finite)
    expect_error(scene_copy, "scale_mat_6", "non-finite")


def test_undecodable_image(scene_copy):
    image = scene_copy / "image" / "000003.png"
    image.write_bytes(image.read_bytes()[:300])
    expect_error(scene_copy, "Cannot decode image", str(image))


def test_mask_of_another_size(scene_copy):
    mask = scene_copy / "mask" / "001.png"
    with Image.open(SCENE / "mask" / "001.png") as im:
        im.resize((50, 38)).save(mask)
    expect_error(scene_copy, str(mask), "50x38", "000001.png", "100x75")


def test_dataparser_module_is_light():
    """The lead registers NeuSDataParserConfig as an entry point; nerfstudio loads those while its datamanager module
    is still importing, so ng_methods.data.neus must not import datamanagers, pipelines or models."""
    code = (
        "import sys, ng_methods.data.neus\n"
        "heavy = [m for m in sys.modules if m.startswith(('nerfstudio.data.datamanagers', 'nerfstudio.pipelines',"
        " 'nerfstudio.models', 'nerfstudio.configs.method_configs'))]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
