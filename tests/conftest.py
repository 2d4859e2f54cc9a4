"""Shared fixtures: small real scenes copied into tmp dirs, an ffmpeg on PATH for ns-render, CUDA skip mark."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # The Triton kernels run under Triton's CPU interpreter; it must be chosen before anything imports triton,
    # and conftest is imported before every test module (some of which import triton through our kernels).
    os.environ.setdefault("TRITON_INTERPRET", "1")

DATA_DIR = Path(__file__).parent / "data"

# Evaluated once, with the call: a skip mark that always skips on CPU and never on a GPU.
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_blender_subset(source: Path, target: Path, counts: dict) -> Path:
    """Copy a Blender scene keeping the first ``counts[split]`` frames of each split."""
    target.mkdir(parents=True, exist_ok=True)
    for split, count in counts.items():
        meta = json.loads((source / f"transforms_{split}.json").read_text())
        meta["frames"] = meta["frames"][:count]
        for frame in meta["frames"]:
            image = Path(frame["file_path"] + ".png")
            (target / image).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / image, target / image)
        (target / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))
    return target


@pytest.fixture
def tiny_lego(tmp_path: Path) -> Path:
    """100x100 lego with 20 train, 2 val and 2 test views (a real capture, small enough for CPU training)."""
    return make_blender_subset(DATA_DIR / "lego-100", tmp_path / "lego", {"train": 20, "val": 2, "test": 2})


@pytest.fixture(scope="session")
def ffmpeg_on_path(tmp_path_factory) -> None:
    """Put an ``ffmpeg`` on PATH (from imageio-ffmpeg's wheel) for ``ns-render``'s video writer."""
    if shutil.which("ffmpeg"):
        return
    import imageio_ffmpeg

    bin_dir = tmp_path_factory.mktemp("ffmpeg-bin")
    (bin_dir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
