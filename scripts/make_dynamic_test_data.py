"""Make the tiny time-aware test scenes in tests/data/ from the full scenes.

    python scripts/make_dynamic_test_data.py --dnerf-data /work/shared/data/dnerf/lego-200 \
        --nonrigid-data /work/shared/data/dynamic/nonrigid-example --out tests/data

Writes:

- ``dnerf-lego-tiny/``: D-NeRF lego, 20 train frames evenly spaced in time (of the 34 given), 3 val and 3 test
  frames (first, middle and last in time), resized to 100x100 RGBA (LANCZOS). The JSON keeps ``camera_angle_x``,
  ``time``, ``rotation`` and ``transform_matrix`` unchanged; file paths keep their original names.
- ``nonrigid-tiny/``: Non-Rigid NeRF example sequence, 12 of the 86 frames (11 evenly spaced plus the file's
  ``i_test`` frame), 512x384 -> 128x96 (LANCZOS), renamed ``image000001.png`` ... in time order.
  ``precomputed.json`` holds the matching ``poses`` and ``bds`` rows with the hwf column scaled by 1/4,
  ``render_poses`` (first 4, hwf scaled) and ``i_test`` remapped to the position of the original test frame.

Each folder gets a README.md saying where it came from and under which terms. Deterministic for given inputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import List

import numpy as np
from PIL import Image

DNERF_SIZE = 100
DNERF_TRAIN = 20
DNERF_EVAL = 3
NONRIGID_SCALE = 4
NONRIGID_FRAMES = 11

DNERF_README = """# dnerf-lego-tiny

D-NeRF "lego" (Pumarola et al., CVPR 2021), made by `scripts/make_dynamic_test_data.py` from the 200x200 copy in
`../shared/data/dnerf/lego-200` (itself resized from the D-NeRF dataset's 800x800 frames): {train} train frames
spread over time, {val} val and {test} test frames, resized to {size}x{size} RGBA (LANCZOS). Terms: D-NeRF dataset
terms (research use); the lego model is CC-BY-NC (NeRF dataset).
"""

NONRIGID_README = """# nonrigid-tiny

Non-Rigid NeRF example sequence (Tretschk et al., ICCV 2021; facebookresearch/nonrigid_nerf, MIT licence), made by
`scripts/make_dynamic_test_data.py` from `../shared/data/dynamic/nonrigid-example`: {count} of the 86 frames (source
frames {frames}), 512x384 -> {w}x{h} (LANCZOS), renamed in time order; `precomputed.json` rows match, hwf scaled by
1/{scale}, `i_test` remapped (source frame {test}).
"""


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _spread(count: int, total: int) -> List[int]:
    """``count`` indices evenly spread over ``range(total)`` (first and last included)."""
    return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))


def make_dnerf_tiny(source: Path, target: Path) -> None:
    _fresh_dir(target)
    counts = {"train": DNERF_TRAIN, "val": DNERF_EVAL, "test": DNERF_EVAL}
    for split, count in counts.items():
        meta = json.loads((source / f"transforms_{split}.json").read_text())
        frames = sorted(meta["frames"], key=lambda f: f["time"])
        meta["frames"] = [frames[i] for i in _spread(count, len(frames))]
        for frame in meta["frames"]:
            image = Path(frame["file_path"].replace("./", "") + ".png")
            (target / image).parent.mkdir(parents=True, exist_ok=True)
            with Image.open(source / image) as im:
                im.convert("RGBA").resize((DNERF_SIZE, DNERF_SIZE), Image.LANCZOS).save(target / image)
        (target / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))
    (target / "README.md").write_text(DNERF_README.format(size=DNERF_SIZE, **counts))


def make_nonrigid_tiny(source: Path, target: Path) -> None:
    _fresh_dir(target)
    meta = json.loads((source / "precomputed.json").read_text())
    images = sorted((source / "images").glob("*.png"))
    test = meta["i_test"] if isinstance(meta["i_test"], int) else meta["i_test"][0]
    frames = sorted(set(_spread(NONRIGID_FRAMES, len(images))) | {test})
    (target / "images").mkdir()
    for new, old in enumerate(frames):
        with Image.open(images[old]) as im:
            w, h = im.size[0] // NONRIGID_SCALE, im.size[1] // NONRIGID_SCALE
            im.convert("RGB").resize((w, h), Image.LANCZOS).save(target / "images" / f"image{new + 1:06d}.png")
    poses = np.asarray(meta["poses"], dtype=np.float64)[frames]
    poses[:, :, 4] /= NONRIGID_SCALE
    render_poses = np.asarray(meta["render_poses"], dtype=np.float64)[:4]
    render_poses[:, :, 4] /= NONRIGID_SCALE
    tiny = {
        "poses": poses.tolist(),
        "bds": np.asarray(meta["bds"], dtype=np.float64)[frames].tolist(),
        "render_poses": render_poses.tolist(),
        "i_test": frames.index(test),
    }
    (target / "precomputed.json").write_text(json.dumps(tiny))
    (target / "README.md").write_text(
        NONRIGID_README.format(count=len(frames), frames=frames, w=w, h=h, scale=NONRIGID_SCALE, test=test)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dnerf-data", type=Path, help="D-NeRF lego folder (e.g. the 200x200 copy)")
    parser.add_argument("--nonrigid-data", type=Path, help="Non-Rigid NeRF example_sequence folder")
    parser.add_argument("--out", type=Path, default=Path("tests/data"))
    args = parser.parse_args()
    if args.dnerf_data is None and args.nonrigid_data is None:
        parser.error("give --dnerf-data and/or --nonrigid-data")
    if args.dnerf_data is not None:
        make_dnerf_tiny(args.dnerf_data, args.out / "dnerf-lego-tiny")
    if args.nonrigid_data is not None:
        make_nonrigid_tiny(args.nonrigid_data, args.out / "nonrigid-tiny")


if __name__ == "__main__":
    main()
