"""Stage 5 of ``scripts/gpu_check.py``: methods trained and evaluated through ``scripts/benchmark_methods.py``.

* ``methods-nerf``: ``ngpc-hashgrid`` and nerfstudio's ``instant-ngp`` on blender/lego (400x400) for the same
  wall-clock budget, PSNR/SSIM on evenly spaced test views. Both are built and evaluated by
  ``benchmark_methods.benchmark_method``, so nerfstudio's LPIPS (which needs a download) is replaced the same way
  for both (``offline_lpips``); ``instant-ngp`` needs CUDA and is skipped on CPU with the reason.
* ``methods-splat``: ``ng-splatfacto`` and ``c3dgs-synthetic``, short runs on lego; the rasteriser calls are counted
  (gsplat vs the PyTorch reference) to show which path ran.
* ``methods-dynamic``: ``4d-rotor-gs``, short run on dnerf/lego, then render FPS at the test views' size (800x800).

Scenes are subsets of ``<data>/blender/lego`` and ``<data>/dnerf/lego`` (images symlinked), or in tiny mode
downscaled copies of ``tests/data``. ``export_device_data`` writes real copies small enough to carry to a GPU machine.
"""

from __future__ import annotations

import collections
import contextlib
import json
import shutil
import statistics
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional
from unittest import mock

from gpu_check_context import REPO_ROOT, StageContext, fmt


class Scene(NamedTuple):
    """Where a scene comes from and how many frames of each split are kept (None: all)."""

    source: str
    counts: Dict[str, Optional[int]]
    tiny_source: str
    tiny_counts: Dict[str, Optional[int]]
    tiny_downscale: int


SCENES = {
    "lego": Scene("blender/lego", {"train": None, "val": 2, "test": 25},
                  "lego-100", {"train": 8, "val": 1, "test": 1}, 4),
    "dnerf-lego": Scene("dnerf/lego", {"train": None, "val": 2, "test": 5},
                        "dnerf-lego-tiny", {"train": 6, "val": 1, "test": 1}, 4),
}
TINY_TRAINING = ["--reduced", "--max-steps", "2"]
TINY_SIZES = {"num_random": 300, "target_num_samples": 1 << 12, "max_num_samples_per_ray": 16,
              "render_step_size": 0.15}
"""Smaller than benchmark_methods' ``--reduced`` sizes: the PyTorch reference paths, two CPU cores, seconds each."""


def evenly_spaced(frames: List[Dict], count: Optional[int]) -> List[Dict]:
    if count is None or count >= len(frames):
        return frames
    return [frames[i * len(frames) // count] for i in range(count)]


def subset_scene(source: Path, target: Path, counts: Dict[str, Optional[int]], copy: bool = False,
                 downscale: int = 1) -> Path:
    """A Blender / D-NeRF scene with ``counts[split]`` evenly spaced frames per split: images symlinked, or copied
    (``copy``), or resized by ``1 / downscale`` (then the intrinsics follow: they derive from the image size)."""
    if target.exists():
        shutil.rmtree(target)
    for split, count in counts.items():
        meta = json.loads((source / f"transforms_{split}.json").read_text())
        meta["frames"] = evenly_spaced(meta["frames"], count)
        for frame in meta["frames"]:
            name = frame["file_path"] if Path(frame["file_path"]).suffix else frame["file_path"] + ".png"
            src, dst = source / name, target / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if downscale > 1:
                from PIL import Image

                with Image.open(src) as image:
                    image.resize((image.width // downscale, image.height // downscale), Image.LANCZOS).save(dst)
            elif copy:
                shutil.copy2(src, dst)
            else:
                dst.symlink_to(src.resolve())
        (target / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))
    return target


def export_device_data(data_root: Path, target: Path) -> List[Path]:
    """Copies of the scenes the methods stages use, trimmed to what they read (about 30 MB), for a GPU machine:
    lego and D-NeRF lego subsets, and DTU scan65 halved with JPEG images (about 2 MB; gpu_check_surfaces.py)."""
    from gpu_check_surfaces import SCAN, export_scan

    written = [subset_scene(data_root / scene.source, target / scene.source, scene.counts, copy=True)
               for scene in SCENES.values()]
    if (data_root / SCAN).is_dir():
        written.append(export_scan(data_root, target))
    else:
        print(f"[gpu-check] {data_root / SCAN} not found: the methods-surfaces stage will have no scene", flush=True)
    return written


def prepare_scene(ctx: StageContext, key: str) -> Path:
    scene, target = SCENES[key], ctx.scratch_dir / "scenes" / key
    if ctx.tiny:
        return subset_scene(REPO_ROOT / "tests" / "data" / scene.tiny_source, target, scene.tiny_counts,
                            downscale=scene.tiny_downscale)
    return subset_scene(ctx.data_root / scene.source, target, scene.counts)


@contextlib.contextmanager
def count_rasterizer_calls():
    """Counts calls of gsplat's ``rasterization`` and of our PyTorch reference rasteriser while active."""
    import ng_methods.kernels.splat as splat

    calls: collections.Counter = collections.Counter()
    targets = [("reference", splat, "rasterize_reference")]
    with contextlib.suppress(Exception):
        import gsplat

        targets.append(("gsplat", gsplat, "rasterization"))
    with contextlib.ExitStack() as stack:
        for label, module, attribute in targets:
            def counted(*args, _original=getattr(module, attribute), _label=label, **kwargs):
                calls[_label] += 1
                return _original(*args, **kwargs)

            stack.enter_context(mock.patch.object(module, attribute, counted))
        yield calls


def run_method(ctx: StageContext, name: str, scene: Path, dataparser: str, training: List[str]) -> Dict:
    """Trains and evaluates one method with ``benchmark_methods.benchmark_method``; records it in the figures."""
    import benchmark_methods as bench

    args = bench.parse_args(["--methods", name, "--data", str(scene), "--dataparser", dataparser, "--device",
                             ctx.device, "--output-dir", str(ctx.scratch_dir / "methods"), *training])
    sizes = mock.patch.dict(bench.REDUCED_SIZES, TINY_SIZES) if ctx.tiny else contextlib.nullcontext()
    with sizes, count_rasterizer_calls() as calls:
        record = bench.benchmark_method(name, args)
    record["rasterizer_calls"] = dict(calls)
    if record.get("steps") and record.get("train_time_s"):
        record["steps_per_s"] = record["steps"] / record["train_time_s"]
    if record["status"] == "failed":
        ctx.failures.append(f"{name}: {record.get('error')} (traceback in logs/{ctx.name}.log)")
    ctx.figures.setdefault("methods", []).append(record)
    ctx.save()
    return record


def method_table(ctx: StageContext, title: str, records: Iterable[Dict]) -> None:
    rows = []
    for r in records:
        calls = r.get("rasterizer_calls", {})
        rows.append([r["method"], r["status"], r.get("steps", "—"), fmt(r.get("train_time_s"), ".1f"),
                     fmt(r.get("steps_per_s"), ".3g"), fmt(r.get("psnr"), ".2f"), fmt(r.get("ssim"), ".4f"),
                     r.get("num_gaussians", "—"), fmt(r.get("storage_mb"), ".2f"),
                     fmt(r.get("fps", {}).get("fps", r.get("render_fps")), ".4g"),
                     f"{calls.get('gsplat', 0)} / {calls.get('reference', 0)}",
                     (r.get("reason") or r.get("error") or "")[:100]])
    ctx.table(title, ["method", "status", "steps", "train s", "steps/s", "PSNR", "SSIM", "Gaussians", "MB",
                      "render FPS", "gsplat / reference calls", "note"], rows)


def methods_nerf(ctx: StageContext) -> None:
    """ngpc-hashgrid vs nerfstudio's instant-ngp on lego for the same wall-clock training budget."""
    scene = prepare_scene(ctx, "lego")
    budget = ctx.options["nerf_budget_s"]
    training = TINY_TRAINING if ctx.tiny else ["--time-budget-s", str(budget)]
    ours, theirs = (run_method(ctx, name, scene, "blender", training) for name in ("ngpc-hashgrid", "instant-ngp"))
    gap = ours["psnr"] - theirs["psnr"] if ours.get("psnr") is not None and theirs.get("psnr") is not None else None
    ctx.figures["psnr_gap_db"] = gap
    ctx.target(f"ngpc-hashgrid PSNR minus instant-ngp PSNR, same training time ({budget:g} s each)", gap, 0.0, "dB",
               f"on {ours.get('eval_images', '?')} evenly spaced test views"
               + (" (tiny mode: 2 steps, not the budget)" if ctx.tiny else ""))
    method_table(ctx, f"NeRF methods on lego, {'2 steps (tiny)' if ctx.tiny else f'{budget} s of training each'}",
                 [ours, theirs])


def methods_splat(ctx: StageContext) -> None:
    """ng-splatfacto and c3dgs-synthetic, short runs on lego; on a GPU every render should go through gsplat."""
    scene = prepare_scene(ctx, "lego")
    training = TINY_TRAINING if ctx.tiny else ["--max-steps", str(ctx.options["splat_max_steps"]),
                                               "--time-budget-s", str(ctx.options["splat_budget_s"])]
    records = [run_method(ctx, name, scene, dataparser, training)
               for name, dataparser in (("ng-splatfacto", "blender"), ("c3dgs-synthetic", "method"))]
    for r in records:
        calls = r["rasterizer_calls"]
        through_gsplat = r["status"] == "ok" and calls.get("gsplat", 0) > 0 and calls.get("reference", 0) == 0
        ctx.condition(f"{r['method']} trains and renders through gsplat", through_gsplat,
                      f"{r['status']}; gsplat calls {calls.get('gsplat', 0)}, reference {calls.get('reference', 0)}",
                      "runs, gsplat only")
    method_table(ctx, "Gaussian methods on lego, short runs", records)


def render_fps(ctx: StageContext, record: Dict, renders: int) -> Dict[str, object]:
    """Median full-image render rate of the first test view, from the saved checkpoint, after one warm-up."""
    import torch

    import benchmark_evaluation as evaluation

    pipeline, _ = evaluation.load_saved_run(Path(record["config_path"]), "test", ctx.device)
    camera, _ = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))
    sync = evaluation.synchronizer(ctx.device)
    with torch.no_grad():
        evaluation.render_timed(pipeline, camera, sync)
        seconds = [evaluation.render_timed(pipeline, camera, sync)[1] for _ in range(renders)]
    size = f"{int(camera.width.flatten()[0])}x{int(camera.height.flatten()[0])}"
    return {"fps": 1.0 / statistics.median(seconds), "resolution": size, "renders": renders,
            "median_ms": 1e3 * statistics.median(seconds)}


def methods_dynamic(ctx: StageContext) -> None:
    """4d-rotor-gs, short run on D-NeRF lego, then render FPS at the test views' resolution."""
    scene = prepare_scene(ctx, "dnerf-lego")
    training = TINY_TRAINING if ctx.tiny else ["--max-steps", str(ctx.options["dynamic_max_steps"]),
                                               "--time-budget-s", str(ctx.options["dynamic_budget_s"])]
    record = run_method(ctx, "4d-rotor-gs", scene, "method", training)
    if record["status"] == "ok":
        record["fps"] = render_fps(ctx, record, renders=2 if ctx.tiny else 50)
        ctx.save()
    fps = record.get("fps", {})
    ctx.target("4d-rotor-gs render FPS at 800x800 (README target, for a trained model)",
               fps.get("fps") if fps.get("resolution") == "800x800" else None, 1000, "FPS",
               f"{record.get('num_gaussians', '?')} Gaussians after {record.get('steps', '?')} steps, "
               f"rendered at {fps.get('resolution', '?')}")
    method_table(ctx, "4d-rotor-gs on D-NeRF lego, short run", [record])
