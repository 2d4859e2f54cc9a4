"""PseudoImageCache: deterministic cameras, disk cache bounded by max_bytes, reload equals recompute."""

from __future__ import annotations

import pytest
import torch

from ng_methods.distill.pseudo_images import PseudoImageCache
from ng_methods.distill.teacher import load_teacher

DOWNSCALE = 10.0  # 100x100 lego cameras -> 10x10 pseudo images


@pytest.fixture(scope="module")
def teacher_and_cameras(blender_teacher_config):
    teacher = load_teacher(blender_teacher_config, "cpu")
    return teacher, teacher.pipeline.datamanager.train_dataparser_outputs.cameras


def _cache(teacher_and_cameras, root, max_bytes=10**9, seed=0):
    teacher, cameras = teacher_and_cameras
    return PseudoImageCache(teacher, cameras, root, max_bytes=max_bytes, seed=seed, scene_kind="auto",
                            downscale=DOWNSCALE)


def test_cameras_are_a_function_of_seed_and_index(teacher_and_cameras):
    first, again = _cache(teacher_and_cameras, None), _cache(teacher_and_cameras, None)
    other = _cache(teacher_and_cameras, None, seed=1)
    assert torch.equal(first.camera(3).camera_to_worlds, again.camera(3).camera_to_worlds)
    assert not torch.allclose(first.camera(3).camera_to_worlds, first.camera(4).camera_to_worlds)
    assert not torch.allclose(first.camera(3).camera_to_worlds, other.camera(3).camera_to_worlds)
    camera, rgb = first.get(3)
    assert camera.shape == (1,) and rgb.shape == (10, 10, 3)
    assert torch.equal(camera.camera_to_worlds, first.camera(3).camera_to_worlds)


def test_disk_cache_is_bounded_and_reloads_what_it_would_recompute(teacher_and_cameras, tmp_path):
    image_bytes = 10 * 10 * 3 * 4 + 128
    cache = _cache(teacher_and_cameras, tmp_path, max_bytes=2 * image_bytes + 10)
    cache.prefill(4)
    files = sorted(tmp_path.rglob("pseudo_*.npy"))
    assert [f.name for f in files] == ["pseudo_0000000.npy", "pseudo_0000001.npy"]  # the bound stops writing
    assert sum(f.stat().st_size for f in files) <= cache.max_bytes
    uncached = _cache(teacher_and_cameras, None)
    for index in range(4):  # past the bound, images are recomputed, never an error, and equal
        torch.testing.assert_close(cache.get(index)[1], uncached.get(index)[1], atol=0, rtol=0)
    assert len(list(tmp_path.rglob("pseudo_*.npy"))) == 2

    reopened = _cache(teacher_and_cameras, tmp_path, max_bytes=2 * image_bytes + 10)
    assert reopened.bytes_written == sum(f.stat().st_size for f in files)
    reopened._render = None  # a cached image must come from disk, not from the teacher
    torch.testing.assert_close(reopened.get(1)[1], uncached.get(1)[1], atol=0, rtol=0)
    other_seed = _cache(teacher_and_cameras, tmp_path, seed=5)
    assert other_seed.directory != cache.directory and other_seed.bytes_written == 0
