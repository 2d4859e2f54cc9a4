"""LLFF dataparser (``llff-data``) on the tiny fern and statue copies in tests/data (scripts/make_test_data.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ng_methods.data.llff import LLFFDataParserConfig, holdout_indices
from ng_methods.data.validation import DataValidationError

REPO = Path(__file__).resolve().parents[2]
FERN = REPO / "tests" / "data" / "llff-fern-tiny"
WILD = REPO / "tests" / "data" / "wild-tiny"

FERN_NAMES = [f"image{i:03d}.png" for i in (0, 3, 5, 8, 11, 14, 16, 19)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("llff-cache")


def outputs(data: Path, cache: Path, split: str = "train", **kwargs):
    return LLFFDataParserConfig(data=data, cache_dir=cache, **kwargs).setup().get_dataparser_outputs(split)


def reference_c2w(data: Path) -> np.ndarray:
    """LLFF's own conversion of poses_bounds.npy rows to [right, up, backwards] camera-to-world matrices."""
    poses = np.load(data / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)
    return np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)


# ---------------------------------------------------------------------------------------------------- intrinsics
def test_fern_shapes_and_intrinsics(cache):
    out = outputs(FERN, cache, "all")
    cams = out.cameras
    assert cams.shape == (8,)
    assert [p.name for p in out.image_filenames] == FERN_NAMES
    assert all(p.parent.name == "images_32" for p in out.image_filenames)  # only folder -> picked automatically
    assert out.mask_filenames is None
    assert cams.camera_to_worlds.shape == (8, 3, 4)
    assert (cams.width == 126).all() and (cams.height == 94).all()
    h, w, focal = np.load(FERN / "poses_bounds.npy")[0, 4:15:5]
    assert (h, w) == (3024, 4032)  # hwf stays at the original resolution
    torch.testing.assert_close(cams.fx, torch.full((8, 1), focal * 126 / 4032, dtype=torch.float32))
    torch.testing.assert_close(cams.fy, torch.full((8, 1), focal * 94 / 3024, dtype=torch.float32))
    assert (cams.cx == 63.0).all() and (cams.cy == 47.0).all()
    with Image.open(out.image_filenames[0]) as im:
        assert im.size == (126, 94)


def test_wild_intrinsics(cache):
    out = outputs(WILD, cache, "all")
    cams = out.cameras
    assert cams.shape == (8,)
    assert (cams.width == 100).all() and (cams.height == 150).all()
    h, w, focal = np.load(WILD / "poses_bounds.npy")[0, 4:15:5]
    assert (h, w) == (1200, 800)  # portrait, as the photos
    torch.testing.assert_close(cams.fx, torch.full((8, 1), focal / 8, dtype=torch.float32))
    torch.testing.assert_close(cams.fy, cams.fx)
    assert (cams.cx == 50.0).all() and (cams.cy == 75.0).all()


def test_per_image_sizes(tmp_path, cache):
    """Photo collections may mix sizes: each camera is scaled by its own image size."""
    data = tmp_path / "wild"
    shutil.copytree(WILD, data)
    name = sorted((data / "images").iterdir())[2].name
    for sub in ("images", "masks"):
        with Image.open(data / sub / name) as im:
            im.resize((50, 75)).save(data / sub / name)
    out = outputs(data, cache, "all")
    focal = np.load(data / "poses_bounds.npy")[2, 14]
    assert out.cameras.width[2].item() == 50 and out.cameras.height[2].item() == 75
    assert out.cameras.fx[2].item() == pytest.approx(focal * 50 / 800, rel=1e-5)
    assert out.cameras.cx[2].item() == 25.0
    assert out.cameras.fx[1].item() == pytest.approx(focal * 100 / 800, rel=1e-5)
    with Image.open(out.mask_filenames[2]) as m:
        assert m.size == (50, 75)


def test_aspect_mismatch_is_an_error(tmp_path, cache):
    data = tmp_path / "wild"
    shutil.copytree(WILD, data)
    name = sorted((data / "images").iterdir())[3].name
    with Image.open(data / "images" / name) as im:
        im.crop((0, 0, 100, 100)).save(data / "images" / name)
    with pytest.raises(DataValidationError, match=rf"{name}.*poses_bounds.npy row 3.*aspect"):
        outputs(data, cache)


def test_derived_downscale_factor(tmp_path):
    out = outputs(FERN, tmp_path, "all", downscale_factor=64)
    assert all(tmp_path in p.parents and p.parent.name == "images_64" for p in out.image_filenames)
    assert (out.cameras.width == 63).all() and (out.cameras.height == 47).all()
    focal = np.load(FERN / "poses_bounds.npy")[0, 14]
    assert out.cameras.fx[0].item() == pytest.approx(focal * 63 / 4032, rel=1e-5)
    assert out.cameras.fy[0].item() == pytest.approx(focal * 47 / 3024, rel=1e-5)
    with pytest.raises(DataValidationError, match="available factors: 32"):
        outputs(FERN, tmp_path, downscale_factor=48)


def test_auto_factor_prefers_finest_folder_within_limit(tmp_path, cache):
    data = tmp_path / "fern"
    shutil.copytree(FERN, data)
    shutil.copytree(data / "images_32", data / "images_64")
    out = outputs(data, cache)
    assert out.image_filenames[0].parent.name == "images_32"
    out = outputs(data, cache, max_auto_resolution=100)  # 126 px > 100 -> next folder
    assert out.image_filenames[0].parent.name == "images_64"


# ---------------------------------------------------------------------------------------------------- splits
def test_holdout_split(cache):
    train = outputs(FERN, cache, "train")
    test = outputs(FERN, cache, "test")
    assert [p.name for p in test.image_filenames] == [FERN_NAMES[0]]  # i % 8 == 0
    assert [p.name for p in train.image_filenames] == FERN_NAMES[1:]

    train = outputs(FERN, cache, "train", holdout_every=3)
    val = outputs(FERN, cache, "val", holdout_every=3)
    assert [p.name for p in val.image_filenames] == [FERN_NAMES[i] for i in (0, 3, 6)]
    assert [p.name for p in train.image_filenames] == [FERN_NAMES[i] for i in (1, 2, 4, 5, 7)]
    # splits share one world frame: the same image gets the same camera in every split
    full = outputs(FERN, cache, "all", holdout_every=3)
    torch.testing.assert_close(val.cameras.camera_to_worlds, full.cameras.camera_to_worlds[[0, 3, 6]])
    torch.testing.assert_close(val.metadata["bounds"], full.metadata["bounds"][[0, 3, 6]])

    assert len(outputs(FERN, cache, "test", holdout_every=0).image_filenames) == 8
    assert holdout_indices(20, 8, "test").tolist() == [0, 8, 16]
    with pytest.raises(ValueError, match="Unknown split"):
        holdout_indices(5, 8, "bogus")


# ---------------------------------------------------------------------------------------------------- conventions
@pytest.mark.parametrize("data", [FERN, WILD], ids=["fern", "wild"])
def test_poses_match_llff_reference_up_to_similarity(data, cache):
    """Our poses are LLFF's [right, up, back] conversion followed by one rotation+translation and one scale:
    undoing ``dataparser_transform`` / ``dataparser_scale`` gives back the reference exactly."""
    out = outputs(data, cache, "all")
    ref = torch.from_numpy(reference_c2w(data)).float()
    back = out.transform_poses_to_original_space(out.cameras.camera_to_worlds, camera_convention="opengl")
    torch.testing.assert_close(back, ref, atol=1e-3, rtol=1e-4)
    # bd_factor: nearest bound becomes 1 / 0.75, ratios of bounds preserved
    bounds = np.load(data / "poses_bounds.npy")[:, 15:]
    assert out.metadata["near"] == pytest.approx(1 / 0.75, rel=1e-5)
    assert out.metadata["far"] == pytest.approx(bounds[:, 1].max() / bounds[:, 0].min() / 0.75, rel=1e-5)
    assert out.dataparser_scale == pytest.approx(1 / (bounds[:, 0].min() * 0.75))
    torch.testing.assert_close(
        out.metadata["bounds"], torch.from_numpy(bounds * out.dataparser_scale).float(), rtol=1e-5, atol=1e-5
    )
    # rotations stay rotations
    rot = out.cameras.camera_to_worlds[:, :, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand(8, 3, 3), atol=1e-5, rtol=0)


def _axes_intersection(origins: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """Least-squares closest point to the camera axis LINES (direction sign does not matter)."""
    axes = torch.nn.functional.normalize(axes.double(), dim=-1)
    proj = torch.eye(3, dtype=torch.float64) - axes[:, :, None] * axes[:, None, :]
    return torch.linalg.solve(proj.sum(0), (proj @ origins.double()[:, :, None]).sum(0))[:, 0].float()


@pytest.mark.parametrize("data,forward_facing", [(FERN, True), (WILD, False)], ids=["fern", "wild"])
def test_cameras_look_at_the_scene(data, forward_facing, cache):
    out = outputs(data, cache, "all")
    c2w = out.cameras.camera_to_worlds
    origins, view = c2w[:, :, 3], -c2w[:, :, 2]  # OpenGL: the camera looks along -z
    # The point the optical axes converge to (computed without using their sign) is in front of every camera.
    target = _axes_intersection(origins, c2w[:, :, 2])
    to_target = torch.nn.functional.normalize(target - origins, dim=-1)
    assert ((view * to_target).sum(-1) > 0.9).all()
    # center_method="focus": that point is (near) the origin, and inside the scene box
    assert target.norm() < 0.1 * origins.norm(dim=-1).mean()
    aabb = out.scene_box.aabb
    assert ((origins >= aabb[0]) & (origins <= aabb[1])).all()
    # The point the axes converge to projects into every image, in front of the camera; for the forward-facing
    # fern, so does the middle of every camera's depth range (all cameras see the same content).
    points = [target[None]]
    if forward_facing:
        points.append(origins + view * out.metadata["bounds"].mean(dim=1, keepdim=True))
    for pts in points:
        local = torch.einsum("jab,ija->ijb", c2w[:, :, :3], pts[:, None, :] - origins[None, :, :])  # [i, j, 3]
        assert (local[..., 2] < 0).all()
        u = out.cameras.fx[None, :, 0] * local[..., 0] / -local[..., 2] + out.cameras.cx[None, :, 0]
        v = -out.cameras.fy[None, :, 0] * local[..., 1] / -local[..., 2] + out.cameras.cy[None, :, 0]
        inside = (u > 0) & (u < out.cameras.width[None, :, 0]) & (v > 0) & (v < out.cameras.height[None, :, 0])
        assert inside.all()
    # z-up world: the photos are upright, so camera up vectors point to +z on average
    assert c2w[:, 2, 1].mean() > 0.8
    assert out.metadata["forward_facing"] is forward_facing


def test_llff_recentering_option(cache):
    out = outputs(FERN, cache, "all", center_method="poses", orientation_method="none", bd_factor=None)
    ref = torch.from_numpy(reference_c2w(FERN)).float()
    torch.testing.assert_close(out.cameras.camera_to_worlds[:, :, :3], ref[:, :, :3])
    torch.testing.assert_close(out.cameras.camera_to_worlds[:, :, 3].mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    assert out.dataparser_scale == 1.0
    out = outputs(FERN, cache, "all", scene_scale=2.0)
    torch.testing.assert_close(out.scene_box.aabb, torch.tensor([[-2.0] * 3, [2.0] * 3]))


# ---------------------------------------------------------------------------------------------------- masks
def test_wild_masks(cache):
    from nerfstudio.data.datasets.base_dataset import InputDataset

    out = outputs(WILD, cache, "all")
    assert out.mask_filenames is not None and len(out.mask_filenames) == 8
    dataset = InputDataset(out)
    top, bottom = [], []
    for i, (image_path, mask_path) in enumerate(zip(out.image_filenames, out.mask_filenames)):
        assert cache in mask_path.parents  # derived files never go into the data folder
        item = dataset[i]
        mask = item["mask"]
        assert mask.shape == (150, 100, 1) and mask.dtype == torch.bool
        # binarised from the raw JPEG mask: white (statue) -> 1 = use, black (sky) -> 0 = ignore
        with Image.open(WILD / "masks" / image_path.name) as raw:
            expected = np.asarray(raw.convert("L")) >= 128
        assert np.array_equal(mask[..., 0].numpy(), expected)
        assert 0.1 < mask.float().mean() < 0.9
        top.append(mask[:20].float().mean())
        bottom.append(mask[75:].float().mean())
    # the statue stands at the bottom of the photos, the sky is on top
    assert torch.stack(top).mean() < 0.5 * torch.stack(bottom).mean()

    inverted = outputs(WILD, cache, "all", invert_masks=True)
    with Image.open(inverted.mask_filenames[0]) as a, Image.open(out.mask_filenames[0]) as b:
        assert np.array_equal(np.asarray(a) > 0, ~(np.asarray(b) > 0))
    assert outputs(WILD, cache, "all", use_masks=False).mask_filenames is None


def test_missing_mask_is_an_error(tmp_path, cache):
    data = tmp_path / "wild"
    shutil.copytree(WILD, data)
    name = sorted((data / "masks").iterdir())[4].name
    (data / "masks" / name).unlink()
    with pytest.raises(DataValidationError, match=rf"1 of 8 masks are missing in {data / 'masks'}.*{Path(name).stem}"):
        outputs(data, cache)


# ---------------------------------------------------------------------------------------------------- registration
def test_specs():
    from nerfstudio.plugins.registry_dataparser import DataParserSpecification

    from ng_methods.data import specs
    from ng_methods.data.blender import NgBlenderDataParserConfig

    assert isinstance(specs.llff_dataparser, DataParserSpecification)
    assert isinstance(specs.llff_dataparser.config, LLFFDataParserConfig)
    assert isinstance(specs.ng_blender_dataparser, DataParserSpecification)
    assert isinstance(specs.ng_blender_dataparser.config, NgBlenderDataParserConfig)


_ENTRY_POINTS = """
import importlib.metadata as md
_orig = md.entry_points
def _entry_points(**kwargs):
    if kwargs.get("group") == "nerfstudio.dataparser_configs":
        return md.EntryPoints([
            md.EntryPoint("llff-data", "ng_methods.data.specs:llff_dataparser", "nerfstudio.dataparser_configs"),
            md.EntryPoint("ng-blender-data", "ng_methods.data.specs:ng_blender_dataparser",
                          "nerfstudio.dataparser_configs"),
        ])
    return _orig(**kwargs)
md.entry_points = _entry_points
"""


_SCENARIOS = {
    # what ns-train does: the entry points are loaded while base_datamanager is being imported
    "entry-points-during-datamanager-import": """
        import nerfstudio.data.datamanagers.base_datamanager
        from nerfstudio.configs.dataparser_configs import all_dataparsers
        assert type(all_dataparsers["llff-data"]).__name__ == "LLFFDataParserConfig"
        assert type(all_dataparsers["ng-blender-data"]).__name__ == "NgBlenderDataParserConfig"
        """,
    # our spec module first (it must not pull in datamanagers, pipelines or models), then nerfstudio's registries.
    # (`from nerfstudio.configs.method_configs import all_methods` after it also works, but imports every model:
    # ~10 s, too slow here; the datamanager import below is where a circular import would show.)
    "specs-first": """
        import sys
        import ng_methods.data.specs
        heavy = [m for m in sys.modules if m.startswith(("nerfstudio.data.datamanagers", "nerfstudio.pipelines",
                                                          "nerfstudio.models", "nerfstudio.configs.method_configs"))]
        assert not heavy, heavy
        import nerfstudio.data.datamanagers.base_datamanager
        from nerfstudio.configs.dataparser_configs import all_dataparsers
        assert "llff-data" in all_dataparsers and "ng-blender-data" in all_dataparsers
        """,
}


def test_no_circular_import():
    """Fresh interpreters, with our two entry points registered as if the package were installed."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", _ENTRY_POINTS + textwrap.dedent(body) + "\nprint('OK')\n"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, body in _SCENARIOS.items()
    }  # run concurrently: each mostly waits on imports
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0 and stdout.strip().endswith("OK"), f"{name}:\n{stderr[-3000:]}"


@pytest.mark.filterwarnings("ignore::UserWarning")  # nerfstudio's: dataloader worker count, torch indexing
def test_vanilla_datamanager_samples_only_masked_pixels(cache):
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig

    config = VanillaDataManagerConfig(
        dataparser=LLFFDataParserConfig(data=WILD, cache_dir=cache), train_num_rays_per_batch=256
    )
    datamanager = config.setup(device="cpu", test_mode="val")
    ray_bundle, batch = datamanager.next_train(0)
    assert ray_bundle.origins.shape == (256, 3) and batch["image"].shape == (256, 3)
    masks = [datamanager.train_dataset[i]["mask"] for i in range(len(datamanager.train_dataset))]
    assert all(bool(masks[int(c)][int(y), int(x), 0]) for c, y, x in batch["indices"])
    assert len(datamanager.train_dataset) == 7 and len(datamanager.eval_dataset) == 1
    assert datamanager.train_dataset.metadata["near"] == pytest.approx(1 / 0.75)
