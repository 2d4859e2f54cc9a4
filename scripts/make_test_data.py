"""Make the tiny LLFF-format test scenes in tests/data/ from the full scenes.

    python scripts/make_test_data.py --fern-data /work/shared/data/llff/fern \
        --wild-data /work/shared/data/wild/statue-of-liberty --out tests/data

Writes:

- ``llff-fern-tiny/``: 8 of fern's 20 views (rows 0, 3, 5, 8, 11, 14, 16, 19), taken from ``images_8/`` (504x378)
  and resized to 126x94 into ``images_32/`` (4032 / 32 = 126; 3024 / 32 = 94.5 -> 94, so x and y scale differ
  slightly), PNG. ``poses_bounds.npy`` holds the matching rows unchanged: the hwf column still describes the
  3024x4032 originals, so the parser's intrinsics scaling is exercised.
- ``wild-tiny/``: 8 of the statue's 135 photos (evenly spaced in sorted order) and their masks, 800x1200 -> 100x150,
  saved under the original names in ``images/`` and ``masks/`` as JPEG (quality 90) like the originals, so the masks
  keep the JPEG noise the parser must binarise. ``poses_bounds.npy`` rows unchanged (hwf describes 800x1200).

The output is deterministic for given inputs (fixed selection, LANCZOS resizing, fixed JPEG quality).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FERN_ROWS = [0, 3, 5, 8, 11, 14, 16, 19]
WILD_COUNT = 8


def _images(folder: Path):
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def make_fern(src: Path, out: Path) -> None:
    poses = np.load(src / "poses_bounds.npy")
    images = _images(src / "images_8")
    assert len(images) == len(poses), (len(images), len(poses))
    _fresh_dir(out)
    img_dir = _fresh_dir(out / "images_32")
    for i in FERN_ROWS:
        with Image.open(images[i]) as im:
            w, h = im.size  # 504 x 378
            im.convert("RGB").resize((w // 4, h // 4), resample=Image.Resampling.LANCZOS).save(
                img_dir / images[i].name, format="PNG", optimize=True
            )
    np.save(out / "poses_bounds.npy", poses[FERN_ROWS])


def make_wild(src: Path, out: Path, factor: int = 8) -> None:
    poses = np.load(src / "poses_bounds.npy")
    images = _images(src / "images")
    assert len(images) == len(poses), (len(images), len(poses))
    rows = np.linspace(0, len(images) - 1, WILD_COUNT).round().astype(int).tolist()
    _fresh_dir(out)
    img_dir = _fresh_dir(out / "images")
    mask_dir = _fresh_dir(out / "masks")
    for i in rows:
        for sub, dst in (("images", img_dir), ("masks", mask_dir)):
            with Image.open(src / sub / images[i].name) as im:
                w, h = im.size  # 800 x 1200
                small = im.convert("RGB").resize((w // factor, h // factor), resample=Image.Resampling.LANCZOS)
                small.save(dst / images[i].name, format="JPEG", quality=90)
    np.save(out / "poses_bounds.npy", poses[rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fern-data", type=Path, default=Path("/work/shared/data/llff/fern"))
    parser.add_argument("--wild-data", type=Path, default=Path("/work/shared/data/wild/statue-of-liberty"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data")
    args = parser.parse_args()
    make_fern(args.fern_data, args.out / "llff-fern-tiny")
    make_wild(args.wild_data, args.out / "wild-tiny")
    files = [p for d in ("llff-fern-tiny", "wild-tiny") for p in (args.out / d).rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    print(f"wrote {args.out / 'llff-fern-tiny'} and {args.out / 'wild-tiny'} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
