"""Make the tiny NeuS/IDR-layout DTU test scene in tests/data/ from the full scene.

    python scripts/make_neus_test_data.py --data /work/shared/data/dtu/scan65 \
        --output tests/data/dtu-scan65-tiny

Writes ``image/000000.png ...`` (RGB, LANCZOS), ``mask/000.png ...`` (RGB, 0/255: box-filtered then thresholded at
one half, so the mask stays binary) and ``cameras_sphere.npz`` for ``VIEWS`` views chosen by farthest-point sampling
of the camera centres (deterministic: it starts from view 0), renumbered 0..VIEWS-1 in the order of the source
index. Each view keeps its ``scale_mat_i`` unchanged; ``world_mat_i`` has its first two rows (the pixel rows of the
projection) multiplied by the resize factor, which is exact for continuous pixel coordinates (pixel centres at
``i + 0.5``), the convention the source copy itself used for its 1600 -> 800 resize. ``camera_mat_i`` (IDR's pixel
-> [-1, 1] normalisation) is rewritten for the new size; the ``*_inv_i`` keys are the matching inverses.
A README.md records the source views and terms.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

VIEWS = 8
FACTOR = 8

README = """# dtu-scan65-tiny

DTU scan 65 (Aanaes et al., IJCV 2016) in the NeuS/IDR layout (Wang et al., NeurIPS 2021; Yariv et al., NeurIPS
2020), made by `scripts/make_neus_test_data.py` from `../shared/data/dtu/scan65` (itself resized from DTU's
1600x1200 to 800x600): {count} of the 49 views (source views {views}, chosen by farthest-point sampling of the camera
centres), resized {src_w}x{src_h} -> {w}x{h} (images LANCZOS; masks box-filtered and thresholded at 0.5, kept binary
0/255) and renumbered 0..{last}. `cameras_sphere.npz` keeps every `scale_mat_i` unchanged and scales the first two
rows of each `world_mat_i` by 1/{factor} (pixel coordinates, pixel centres at i + 0.5); `camera_mat_i` is rewritten
for the new size and the `*_inv_i` keys are the matching inverses. Terms: DTU dataset terms (research use).
"""


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _camera_centre(world_mat: np.ndarray) -> np.ndarray:
    """Centre ``C`` of a 3x4 projection ``P = [M | p]`` (its null space): ``C = -M^-1 p``."""
    return -np.linalg.solve(world_mat[:3, :3], world_mat[:3, 3])


def farthest_views(centres: np.ndarray, count: int) -> List[int]:
    """``count`` indices of ``centres`` [n, 3] by greedy farthest-point sampling from index 0, sorted."""
    chosen = [0]
    distance = np.linalg.norm(centres - centres[0], axis=1)
    while len(chosen) < min(count, len(centres)):
        chosen.append(int(distance.argmax()))
        distance = np.minimum(distance, np.linalg.norm(centres - centres[chosen[-1]], axis=1))
    return sorted(chosen)


def _pixel_to_unit_mat(width: int, height: int) -> np.ndarray:
    """IDR's ``camera_mat``: pixel coordinates -> [-1, 1] (as in the source file, for the new size)."""
    mat = np.eye(4)
    mat[0, 0], mat[0, 2] = 2.0 / (2 * width), -1.0
    mat[1, 1], mat[1, 2] = 2.0 / (2 * height), -1.0
    return mat


def _resized_cameras(cameras: Dict[str, np.ndarray], views: List[int], size: tuple) -> Dict[str, np.ndarray]:
    resize = np.diag([1.0 / FACTOR, 1.0 / FACTOR, 1.0, 1.0])
    camera_mat = _pixel_to_unit_mat(*size)
    out: Dict[str, np.ndarray] = {}
    for new, old in enumerate(views):
        world_mat = resize @ cameras[f"world_mat_{old}"].astype(np.float64)
        scale_mat = cameras[f"scale_mat_{old}"].astype(np.float64)
        out[f"world_mat_{new}"] = world_mat
        out[f"world_mat_inv_{new}"] = np.linalg.inv(world_mat)
        out[f"scale_mat_{new}"] = scale_mat
        out[f"scale_mat_inv_{new}"] = np.linalg.inv(scale_mat)
        out[f"camera_mat_{new}"] = camera_mat
        out[f"camera_mat_inv_{new}"] = np.linalg.inv(camera_mat)
    return out


def _save_mask(source: Path, target: Path, size: tuple) -> None:
    with Image.open(source) as im:
        grey = np.asarray(im.convert("L").resize(size, Image.BOX), dtype=np.float32) / 255.0
    binary = np.where(grey >= 0.5, 255, 0).astype(np.uint8)
    Image.fromarray(np.repeat(binary[..., None], 3, axis=2), mode="RGB").save(target, optimize=True)


def make_neus_tiny(source: Path, target: Path) -> None:
    images = sorted((source / "image").glob("*.png"))
    masks = sorted((source / "mask").glob("*.png"))
    cameras = dict(np.load(source / "cameras_sphere.npz"))
    centres = np.stack([_camera_centre(cameras[f"world_mat_{i}"]) for i in range(len(images))])
    views = farthest_views(centres, VIEWS)
    with Image.open(images[0]) as im:
        src_size = im.size
    size = (src_size[0] // FACTOR, src_size[1] // FACTOR)
    _fresh_dir(target)
    (target / "image").mkdir()
    (target / "mask").mkdir()
    for new, old in enumerate(views):
        with Image.open(images[old]) as im:
            im.convert("RGB").resize(size, Image.LANCZOS).save(target / "image" / f"{new:06d}.png", optimize=True)
        _save_mask(masks[old], target / "mask" / f"{new:03d}.png", size)
    np.savez(target / "cameras_sphere.npz", **_resized_cameras(cameras, views, size))
    (target / "README.md").write_text(
        README.format(
            count=len(views), views=views, src_w=src_size[0], src_h=src_size[1], w=size[0], h=size[1],
            last=len(views) - 1, factor=FACTOR,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="NeuS-layout scene: image/, mask/, cameras_sphere.npz")
    parser.add_argument("--output", type=Path, required=True, help="folder to (re)create")
    args = parser.parse_args()
    make_neus_tiny(args.data, args.output)


if __name__ == "__main__":
    main()
