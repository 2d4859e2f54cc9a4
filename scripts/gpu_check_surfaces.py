"""The ``methods-surfaces`` stage of ``scripts/gpu_check.py`` (issue 11, "Benchmark"), and the copy of DTU scan65
that ``--export-data`` carries to a GPU machine.

On a GPU the stage runs ``scripts/benchmark_neus2.py`` on the carried scan65 with NeuS2's held-out views: neus2 for
``--surface-budget-s`` seconds of training (a reduced run: the 15k-step time is projected from its mean step time),
held-out PSNR / SSIM / mask IoU, a 512^3 mesh (extraction time, floaters), then neus-facto for the same training
seconds (equal wall-clock PSNR gap, time to the same PSNR). In CPU tiny mode it runs the benchmark's ``--tiny`` on
``tests/data/dtu-scan65-tiny``, neus2 only (the neus-facto path is exercised by tests/test_benchmark_neus2.py).

The carried scan is scan65 halved to 400x300 with JPEG images (quality 95) and binary PNG masks (about 2 MB instead
of 33 MB, to stay under the 64 MiB a device call carries): its PSNR is that of 400x300 JPEG targets, not the paper's
full-resolution figure; timings hardly change (rays and samples per step do not depend on the image size).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
from gpu_check_context import REPO_ROOT, StageContext, fmt

SCAN = "dtu/scan65"
"""Where the scene lies under the data root (``../shared/data`` or the carried ``.gpu/data``)."""
EXPORT_DOWNSCALE, EXPORT_JPEG_QUALITY = 2, 95
"""The carried copy: 800x600 -> 400x300, images as JPEG."""


def _scaled_cameras(cameras: Dict[str, np.ndarray], scale_x: float, scale_y: float) -> Dict[str, np.ndarray]:
    """``world_mat_i`` with its two pixel rows scaled by the resize ratios (exact for continuous pixel coordinates,
    as scripts/make_neus_test_data.py) and ``scale_mat_i``; the ``*_inv`` and ``camera_mat`` keys are dropped."""
    resize = np.diag([scale_x, scale_y, 1.0, 1.0])
    out = {}
    for key, value in cameras.items():
        if key.startswith("world_mat_") and "inv" not in key:
            out[key] = resize @ value.astype(np.float64)
        elif key.startswith("scale_mat_") and "inv" not in key:
            out[key] = value
    return out


def export_scan(data_root: Path, target: Path) -> Path:
    """A carried copy of ``<data_root>/dtu/scan65``: every view halved, images JPEG, masks binary PNG."""
    from PIL import Image

    source, out = data_root / SCAN, target / SCAN
    if out.exists():
        shutil.rmtree(out)
    (out / "image").mkdir(parents=True)
    (out / "mask").mkdir()
    ratios = []
    for folder, is_mask in (("image", False), ("mask", True)):
        for path in sorted(p for p in (source / folder).iterdir() if p.suffix.lower() in (".png", ".jpg")):
            with Image.open(path) as image:
                size = (image.width // EXPORT_DOWNSCALE, image.height // EXPORT_DOWNSCALE)
                ratios.append((size[0] / image.width, size[1] / image.height))
                if is_mask:  # box filter then threshold at one half: stays binary (as the neus-data cache does)
                    grey = np.asarray(image.convert("L").resize(size, Image.BOX), dtype=np.float32)
                    Image.fromarray(np.where(grey >= 127.5, 255, 0).astype(np.uint8)).save(out / folder / path.name)
                else:
                    image.convert("RGB").resize(size, Image.LANCZOS).save(
                        out / folder / (path.stem + ".jpg"), quality=EXPORT_JPEG_QUALITY)
    with np.load(source / "cameras_sphere.npz") as cameras:
        np.savez(out / "cameras_sphere.npz", **_scaled_cameras(dict(cameras), *ratios[0]))
    return out


def benchmark_argv(ctx: StageContext, scene: Path) -> List[str]:
    import benchmark_neus2 as bench

    common = ["--data", str(scene), "--device", ctx.device, "--output", str(ctx.output_dir / "surfaces" / "neus2"),
              "--scratch-dir", str(ctx.scratch_dir / "surfaces")]
    if ctx.tiny:
        return [*common, "--tiny", "--holdout-every", "4"]
    return [*common, "--eval-views", *map(str, bench.NEUS2_EVAL_VIEWS), "--baseline", "neus-facto",
            "--budget-s", str(ctx.options.get("surface_budget_s", 20.0)), "--mesh-resolution",
            str(ctx.options.get("surface_mesh_resolution", 512)), "--eval-every", "250", "--baseline-eval-every",
            "50", "--probe-pixels", "8192"]


def methods_surfaces(ctx: StageContext) -> None:
    """neus2 on scan65 (reduced run, projected 15k-step time), its mesh, and neus-facto at equal wall-clock."""
    import benchmark_neus2 as bench

    scene = REPO_ROOT / "tests" / "data" / "dtu-scan65-tiny" if ctx.tiny else ctx.data_root / SCAN
    if not (scene / "cameras_sphere.npz").is_file():
        ctx.failures.append(f"{scene}: no NeuS-layout scan65 (scripts/gpu_check.py --export-data DIR copies one)")
        return
    def keep(record: Dict) -> None:  # saved as each method ends: a stage timeout keeps neus2's figures
        ctx.figures.setdefault("methods", []).append(record)
        ctx.save()

    report = bench.run_benchmark(bench.parse_args(benchmark_argv(ctx, scene)), on_method=keep)
    ours = report["methods"][0]
    ctx.figures.update(neus2=ours, methods=report["methods"], comparison=report.get("comparison"),
                       notes=report["notes"], report="surfaces/neus2.json and .md")
    ctx.failures += [f"{r['method']}: {r['error']} (traceback in logs/{ctx.name}.log)" for r in report["methods"]
                     if r["status"] != "ok"]
    record_targets(ctx, ours, report.get("comparison") or {})
    surfaces_table(ctx, report["methods"])
    ctx.save()


def record_targets(ctx: StageContext, ours: Dict, comparison: Dict) -> None:
    import benchmark_neus2 as bench

    projected, mesh = ours.get("projected_15k_s"), ours.get("mesh") or {}
    ctx.condition("neus2 time to 15k steps on scan65 under 5 minutes (projected from a reduced run)",
                  None if projected is None else projected < 300.0,
                  f"{fmt(projected, '.0f')} s ({ours.get('steps', '?')} steps, {fmt(ours.get('train_time_s'), '.1f')} s "
                  "after the first)", "< 300 s", "mean step time (first step apart) x 15000; later steps (every "
                  "level active) may be slower")
    culled = mesh.get("culled_vertex_fraction")
    ctx.condition("neus2 mesh has no floaters outside the dilated masks", None if culled is None else culled < 0.01,
                  f"{fmt(None if culled is None else 100 * culled, '.2f')} % of {mesh.get('vertices', '?')} vertices "
                  f"outside; {mesh.get('components', '?')} components", "< 1 % outside",
                  f"{mesh.get('resolution', '?')}^3 mesh, DTU culling rule (2DGS evaluate_single_scene.py)")
    ctx.target("neus-facto / neus2 training time to the same held-out PSNR", comparison.get("time_to_same_psnr_ratio"),
               bench.TARGET_SPEEDUP, "x", "probe PSNR inside the masks; neus-facto given neus2's training seconds"
               + (" (tiny mode: no neus-facto run)" if ctx.tiny else ""))


def surfaces_table(ctx: StageContext, records: List[Dict]) -> None:
    rows = []
    for r in records:
        e, mesh = r.get("eval") or {}, r.get("mesh") or {}
        rows.append([r["method"], r["status"], r.get("steps", "—"), fmt(r.get("train_time_s"), ".1f"),
                     fmt(r.get("first_step_s"), ".1f"), fmt(r.get("projected_15k_s"), ".0f"),
                     fmt(e.get("psnr_masked"), ".2f"), fmt(e.get("psnr"), ".2f"), fmt(e.get("ssim"), ".3f"),
                     fmt(e.get("mask_iou_common"), ".3f"), fmt(mesh.get("extraction_s"), ".1f"),
                     fmt(mesh.get("culled_vertex_fraction"), ".2%") if mesh else "—",
                     (r.get("error") or "")[:100]])
    ctx.table("Surfaces: neus2 vs neus-facto on DTU scan65" + (" (tiny)" if ctx.tiny else ""),
              ["method", "status", "steps", "train s", "first step s", "15k s (projected)", "PSNR in mask",
               "own PSNR", "own SSIM", "mask IoU", "mesh s", "outside masks", "note"], rows)
