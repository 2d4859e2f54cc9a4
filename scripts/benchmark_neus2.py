"""NeuS2 on a DTU scan (issue 11, "Benchmark"): time to N steps, held-out PSNR / SSIM / mask IoU, mesh extraction
time and floaters, optionally against nerfstudio's ``neus-facto`` given the same training seconds.

    python scripts/benchmark_neus2.py --baseline neus-facto                       # GPU: scan65, 15k steps, 512^3
    python scripts/benchmark_neus2.py --tiny --data tests/data/dtu-scan65-tiny    # CPU: a few steps, 16^3 mesh

Both methods train through nerfstudio's Trainer on the same ``neus-data`` splits (``--holdout-every`` or NeuS2's
``--eval-views``). Training time counts the iterations only (data, callbacks, forward, backward, optimiser; CUDA
synchronised), without set-up, periodic evaluations or checkpoints; the first iteration (Triton compilation, CUDA
start-up) is reported apart as ``first_step_s``. Every ``--eval-every`` steps a fixed set of held-out pixels is
rendered (masked PSNR: pixels inside the object mask, the same target for both methods) to give PSNR-vs-time
curves, from which the "time to the same PSNR" ratio is read. Writes ``<output>.json`` and ``<output>.md`` with the
provenance (machine, command, commit).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from benchmark_evaluation import synchronizer  # noqa: E402

NEUS2_EVAL_VIEWS = (8, 13, 16, 21, 26, 31, 34, 56)
"""NeuS2's held-out DTU views (``tools/data_format_from_neus.py``; see ``ng_methods/data/neus.py``)."""
TARGET_SECONDS, TARGET_SPEEDUP = 300.0, 10.0
"""Issue 11's targets: converged (15k steps) within 5 minutes on an H200; 10x faster than neus-facto to one PSNR."""
PACKAGES = ("nerfstudio", "gsplat", "nerfacc", "triton", "scikit-image", "tinycudann")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "dtu" / "scan65")
    parser.add_argument("--max-steps", type=int, default=None, help="neus2 steps (default 15000; --tiny 3)")
    parser.add_argument("--budget-s", type=float, default=None, help="stop neus2 after this much training time")
    parser.add_argument("--holdout-every", type=int, default=8, help="view i is held out when i %% N == 0")
    parser.add_argument("--eval-views", type=int, nargs="*", default=None,
                        help=f"explicit held-out views (no value: NeuS2's {NEUS2_EVAL_VIEWS}); overrides holdout")
    parser.add_argument("--mesh-resolution", type=int, default=None, help="marching cubes lattice (512; --tiny 16)")
    parser.add_argument("--baseline", choices=["none", "neus-facto"], default="none")
    parser.add_argument("--baseline-max-steps", type=int, default=20001, help="neus-facto's own schedule length")
    parser.add_argument("--eval-every", type=int, default=None, help="neus2 probe period in steps (1000; --tiny 3)")
    parser.add_argument("--baseline-eval-every", type=int, default=None, help="neus-facto probe period (250; 1)")
    parser.add_argument("--probe-pixels", type=int, default=None, help="held-out pixels per probe (16384; --tiny 64)")
    parser.add_argument("--downscale-factor", type=int, default=1, help="neus-data downscale (cached copies)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized grids, samples and images; a few steps")
    parser.add_argument("--output", type=Path, default=None, help="stem of the .json/.md (benchmarks/neus2-...)")
    parser.add_argument("--scratch-dir", type=Path, default=None, help="training runs (default <output>-runs)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv) if argv is None else ["scripts/benchmark_neus2.py", *argv]
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    tiny = args.tiny
    defaults = {"max_steps": 3 if tiny else 15000, "mesh_resolution": 16 if tiny else 512,
                "eval_every": 3 if tiny else 1000, "baseline_eval_every": 1 if tiny else 250,
                "probe_pixels": 64 if tiny else 16384}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.eval_views is not None and not args.eval_views:
        args.eval_views = list(NEUS2_EVAL_VIEWS)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    args.output = (args.output or REPO_ROOT / "benchmarks" / f"neus2-{args.device}-{stamp}").resolve()
    args.scratch_dir = (args.scratch_dir or args.output.parent / f"{args.output.name}-runs").resolve()
    return args


# ------------------------------------------------------------------------------------------------------- configs
def _common_trainer_settings(config, args: argparse.Namespace, name: str, max_steps: int):
    from ng_methods.data.neus import NeuSDataParserConfig

    config.machine.device_type = args.device
    config.max_num_iterations = max_steps
    config.steps_per_save = 10**9  # one checkpoint, at the end (Trainer._after_train)
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.save_only_latest_checkpoint = True
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.output_dir = args.scratch_dir
    config.experiment_name = name
    config.pipeline.datamanager.dataparser = NeuSDataParserConfig(
        data=args.data, holdout_every=args.holdout_every, eval_views=tuple(args.eval_views or ()),
        downscale_factor=args.downscale_factor)
    config.pipeline.datamanager.data = args.data
    return config


def neus2_config(args: argparse.Namespace):
    """The registered neus2 recipe (method_configs/neus2.py) on ``--data``; shrunk for CPU with ``--tiny``."""
    from method_configs.neus2 import neus2_trainer_config

    config = _common_trainer_settings(neus2_trainer_config(args.max_steps), args, "neus2", args.max_steps)
    if args.tiny:  # the sizes of tests/neus2/helpers.py: the same code path, seconds on two CPU cores
        config.pipeline.target_num_samples, config.pipeline.max_num_samples_per_ray = 1 << 11, 64
        config.pipeline.datamanager.train_num_rays_per_batch = 1024
        config.pipeline.datamanager.camera_res_scale_factor = 0.5
        model = config.pipeline.model
        model.field.n_levels, model.field.log2_hashmap_size, model.field.top_resolution = 4, 12, 64.0
        model.sampler.grid_resolution, model.sampler.occ_warmup_steps = 16, 8
        model.marching_steps_per_diagonal, model.eval_num_rays_per_chunk = 128, 2048
        model.levels.base_training_step, model.levels.valid_level_scale = 5, 0.2
    return config


# ------------------------------------------------------------------------------------------------------ training
class IterationClock:
    """Sums the synchronised time of every training iteration (first one apart); stops the trainer at a budget;
    after every ``probe_every`` steps (outside the timed span) records the probe's PSNR against training time."""

    def __init__(self, trainer, budget_s: Optional[float], sync, probe: "HeldOutProbe", probe_every: int):
        self.trainer, self.budget_s, self.sync, self.probe, self.probe_every = trainer, budget_s, sync, probe, probe_every
        self.started, self.first_step_s, self.train_time_s, self.steps = 0.0, None, 0.0, 0
        self.curve: List[Dict[str, float]] = []

    def begin(self, step: int) -> None:
        self.sync()
        self.started = time.perf_counter()

    def end(self, step: int) -> None:
        self.sync()
        seconds = time.perf_counter() - self.started
        if self.first_step_s is None:
            self.first_step_s = seconds
        else:
            self.train_time_s += seconds
        self.steps += 1
        stop = self.budget_s is not None and self.train_time_s >= self.budget_s
        if stop:
            self.trainer.stop_training = True
        if self.steps % self.probe_every == 0 or stop or self.steps == self.trainer.config.max_num_iterations:
            self.curve.append({"step": self.steps, "train_time_s": self.train_time_s,
                               "psnr_masked": self.probe(self.trainer.pipeline)})

    def install(self) -> None:
        from nerfstudio.engine.callbacks import TrainingCallback
        from nerfstudio.engine.callbacks import TrainingCallbackLocation as Where

        self.trainer.callbacks.insert(0, TrainingCallback([Where.BEFORE_TRAIN_ITERATION], self.begin))
        self.trainer.callbacks.append(TrainingCallback([Where.AFTER_TRAIN_ITERATION], self.end))


class HeldOutProbe:
    """A fixed random set of held-out pixels inside the object masks; ``probe(pipeline)`` -> their PSNR (dB)."""

    def __init__(self, pipeline, pixels: int, seed: int = 0) -> None:
        dataset = pipeline.datamanager.eval_dataset
        generator = torch.Generator().manual_seed(seed)
        indices, coords, colors = [], [], []
        per_view = max(1, pixels // len(dataset))
        for index in range(len(dataset)):
            data = dataset[index]
            inside = torch.nonzero(data["fg_mask"][..., 0] > 0.5)
            if not len(inside):
                continue
            chosen = inside[torch.randint(len(inside), (per_view,), generator=generator)]
            indices.append(torch.full((per_view, 1), index))
            coords.append(chosen.float() + 0.5)  # (row, column) of pixel centres, as nerfstudio's ray generator
            colors.append(data["image"][chosen[:, 0], chosen[:, 1], :3])
        if not indices:
            raise ValueError(f"{dataset.metadata.get('fg_mask_filenames', ['?'])[0]}: the held-out masks are empty")
        self.cameras, self.colors = dataset.cameras, torch.cat(colors)
        self.indices, self.coords = torch.cat(indices), torch.cat(coords)

    @torch.no_grad()
    def __call__(self, pipeline) -> float:
        model = pipeline.model
        rays = self.cameras.generate_rays(camera_indices=self.indices, coords=self.coords)
        pipeline.eval()
        try:
            outputs = model.get_outputs_for_camera_ray_bundle(rays.reshape((len(self.indices), 1)))
        finally:
            pipeline.train()
        mse = torch.mean((outputs["rgb"].reshape(-1, 3).cpu() - self.colors) ** 2)
        return float(-10.0 * torch.log10(mse.clamp(min=1e-10)))


def train(config, args: argparse.Namespace, budget_s: Optional[float], probe_every: int) -> Dict[str, object]:
    """Sets up and runs nerfstudio's Trainer; returns the trainer and its timings and PSNR curve."""
    from nerfstudio.utils import writer

    writer.EVENT_WRITERS.clear()
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    clock = IterationClock(trainer, budget_s, synchronizer(args.device), HeldOutProbe(trainer.pipeline,
                           args.probe_pixels), probe_every)
    clock.install()
    trainer.train()
    writer.EVENT_WRITERS.clear()
    steps_timed = max(clock.steps - 1, 1)
    return {"trainer": trainer, "steps": clock.steps, "train_time_s": clock.train_time_s,
            "first_step_s": clock.first_step_s, "seconds_per_step": clock.train_time_s / steps_timed,
            "curve": clock.curve, "config_path": str(config.get_base_dir() / "config.yml")}


# ---------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(pipeline) -> Dict[str, object]:
    """Every held-out view rendered whole: the model's own metrics (neus2: PSNR/SSIM against its background
    composite, mask IoU) and, the same for both methods, PSNR inside the object mask and mask IoU of
    ``accumulation > 0.5``."""
    model, own, common = pipeline.model, [], []
    pipeline.eval()
    for camera, batch in pipeline.datamanager.fixed_indices_eval_dataloader:
        outputs = model.get_outputs_for_camera(camera)
        metrics, _ = model.get_image_metrics_and_images(outputs, batch)
        own.append({k: float(v) for k, v in metrics.items()})
        rgb, image = outputs["rgb"].cpu(), batch["image"][..., :3].cpu()
        mask = batch["fg_mask"][..., 0].cpu() > 0.5
        predicted = outputs["accumulation"][..., 0].cpu() > 0.5
        mse = torch.mean((rgb[mask] - image[mask]) ** 2)
        union = int((predicted | mask).sum())
        common.append({"psnr_masked": float(-10 * torch.log10(mse.clamp(min=1e-10))),
                       "mask_iou_common": float((predicted & mask).sum()) / union if union else 1.0})
    pipeline.train()
    rows = [{**a, **b} for a, b in zip(own, common)]
    means = {key: _finite_mean([row[key] for row in rows]) for key in rows[0]}
    return {**means, "eval_images": len(rows), "per_image": rows}


def _finite_mean(values: List[float]) -> Optional[float]:
    """Mean of the finite values (LPIPS is NaN where its weights are not cached); None if there are none."""
    finite = [value for value in values if math.isfinite(value)]
    return float(np.mean(finite)) if finite else None


def mesh_components(faces: np.ndarray, num_vertices: int) -> Dict[str, object]:
    """Connected components of the mesh (by shared vertices), and the largest one's share of the vertices."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(faces):
        return {"components": 0, "largest_component_fraction": None}
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices, num_vertices))
    used = np.unique(faces)
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(np.unique(labels[used], return_inverse=True)[1])
    return {"components": len(sizes), "largest_component_fraction": float(sizes.max() / len(used))}


def mesh_record(pipeline, config_path: str, resolution: int, device: str) -> Dict[str, object]:
    """Marching cubes time (SDF lattice + scikit-image, synchronised), then the floaters: vertices outside the
    dilated masks of the views (DTU culling rule, ``ng_methods/surfaces/culling.py``) and connected components."""
    from ng_methods.surfaces.cli import ExtractMesh
    from ng_methods.surfaces.marching_cubes import DEFAULT_CHUNK, extract_mesh
    from ng_methods.surfaces.scene_views import extraction_bounds

    model, sync = pipeline.model, synchronizer(device)
    pipeline.eval()
    sync()
    start = time.perf_counter()
    vertices, faces = extract_mesh(model.sdf, extraction_bounds(pipeline), resolution, DEFAULT_CHUNK,
                                   device=model.device)
    sync()
    seconds = time.perf_counter() - start
    vertices, faces = vertices.numpy(), faces.numpy()
    start = time.perf_counter()
    kept, kept_faces = ExtractMesh(load_config=Path(config_path)).cull(pipeline, vertices, faces)
    culling_s = time.perf_counter() - start
    return {"resolution": resolution, "extraction_s": seconds, "culling_s": culling_s, "vertices": len(vertices),
            "faces": len(faces), "culled_vertex_fraction": 1.0 - len(kept) / max(len(vertices), 1),
            **mesh_components(faces, len(vertices)),
            "components_after_culling": mesh_components(kept_faces, len(kept))["components"]}


def first_time_at(curve: List[Dict[str, float]], psnr: float) -> Optional[float]:
    """Training seconds of the first probe at or above ``psnr`` (None if never)."""
    return next((point["train_time_s"] for point in curve if point["psnr_masked"] >= psnr), None)


def compare(ours: Dict, theirs: Dict) -> Dict[str, object]:
    """Equal wall-clock PSNR gap and the "time to the same PSNR" ratio from the probe curves: the PSNR both reached
    (the lower of the two last probes), neus-facto's first time at it over neus2's."""
    if not ours.get("curve") or not theirs.get("curve"):
        return {}
    shared = min(ours["curve"][-1]["psnr_masked"], theirs["curve"][-1]["psnr_masked"])
    ours_t, theirs_t = first_time_at(ours["curve"], shared), first_time_at(theirs["curve"], shared)
    ratio = theirs_t / ours_t if ours_t and theirs_t else None  # a probe right after the (untimed) first step: 0 s
    return {"psnr_masked_gap_db": ours["eval"]["psnr_masked"] - theirs["eval"]["psnr_masked"],
            "shared_probe_psnr": shared, "neus2_time_to_shared_s": ours_t, "neus_facto_time_to_shared_s": theirs_t,
            "time_to_same_psnr_ratio": ratio}


# ----------------------------------------------------------------------------------------------------- the runs
def run_method(name: str, args: argparse.Namespace, budget_s: Optional[float], notes: List[str]) -> Dict:
    """Trains, evaluates and (neus2) meshes one method; a failure is recorded, not raised."""
    record: Dict[str, object] = {"method": name, "status": "ok", "budget_s": budget_s}
    try:
        if name == "neus2":
            result = train(neus2_config(args), args, budget_s, args.eval_every)
        else:
            from neus_facto_baseline import neus_facto_config, neus_facto_encoding

            from ng_methods.compat.lpips import nerfstudio_lpips_offline as offline_lpips

            config = _common_trainer_settings(neus_facto_config(args.tiny), args, name, args.baseline_max_steps)
            with neus_facto_encoding(notes), offline_lpips():
                result = train(config, args, budget_s, args.baseline_eval_every)
        trainer = result.pop("trainer")
        record.update(result)
        record["eval"] = evaluate(trainer.pipeline)
        if name == "neus2":
            record["mesh"] = mesh_record(trainer.pipeline, result["config_path"], args.mesh_resolution, args.device)
            record["projected_15k_s"] = record["seconds_per_step"] * 15000
    except Exception as error:  # noqa: BLE001  (the report says what failed; the other method still runs)
        import traceback

        traceback.print_exc()
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
    return record


def run_benchmark(args: argparse.Namespace, on_method: Optional[Callable[[Dict], None]] = None) -> Dict[str, object]:
    """neus2, then (``--baseline neus-facto``) neus-facto for neus2's training seconds; writes the JSON and md
    (after each method, so a run killed later keeps what it measured); ``on_method`` sees each method's record."""
    on_method = on_method or (lambda record: None)
    from provenance import provenance

    report: Dict[str, object] = {"provenance": provenance(args.argv, args.device, packages=PACKAGES),
                                 "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                 "notes": [], "methods": []}
    ours = run_method("neus2", args, args.budget_s, report["notes"])
    report["methods"].append(ours)
    write_report(report, args.output)
    on_method(ours)
    if args.baseline == "neus-facto":
        if ours["status"] != "ok":
            report["notes"].append("neus-facto skipped: neus2 failed, so there is no training time to match")
        else:
            theirs = run_method("neus-facto", args, ours["train_time_s"], report["notes"])
            report["methods"].append(theirs)
            on_method(theirs)
            if theirs["status"] == "ok":
                report["comparison"] = compare(ours, theirs)
    write_report(report, args.output)
    return report


def _cell(value, spec: str = ".3g") -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def markdown(report: Dict[str, object]) -> str:
    prov, lines = report["provenance"], []
    machine = (f"{prov['date']}, commit {prov['git_commit']}{' (dirty)' if prov['git_dirty'] else ''}, "
               f"{prov['machine']['gpu'] or prov['machine']['cpu']}, torch {prov['versions']['torch']}")
    lines += ["# NeuS2 benchmark", "", f"`{prov['command']}`", "", machine, "",
              "| method | status | steps | train s | first step s | s/step | PSNR in mask | mask IoU | own PSNR | own SSIM |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["methods"]:
        e = r.get("eval", {})
        lines.append(f"| {r['method']} | {r['status']} | {r.get('steps', '—')} | {_cell(r.get('train_time_s'), '.1f')}"
                     f" | {_cell(r.get('first_step_s'), '.1f')} | {_cell(r.get('seconds_per_step'), '.4f')} | "
                     f"{_cell(e.get('psnr_masked'), '.2f')} | {_cell(e.get('mask_iou_common'), '.3f')} | "
                     f"{_cell(e.get('psnr'), '.2f')} | {_cell(e.get('ssim'), '.3f')} |")
    mesh = report["methods"][0].get("mesh")
    if mesh:
        lines += ["", (f"Mesh at {mesh['resolution']}^3: {_cell(mesh['extraction_s'], '.2f')} s, {mesh['vertices']} "
                       f"vertices, {mesh['components']} components; outside the dilated masks: "
                       f"{_cell(100 * mesh['culled_vertex_fraction'], '.2f')} % of the vertices.")]
    ours = report["methods"][0]
    lines += ["", (f"Projected 15k-step time: {_cell(ours.get('projected_15k_s'), '.0f')} s "
                   f"(target < {TARGET_SECONDS:.0f} s on an H200).")]
    comparison = report.get("comparison")
    if comparison:
        lines.append(f"Equal wall-clock PSNR gap (neus2 - neus-facto, in mask): "
                     f"{_cell(comparison['psnr_masked_gap_db'], '.2f')} dB; time to the same probe PSNR "
                     f"({_cell(comparison['shared_probe_psnr'], '.2f')} dB), neus-facto / neus2: "
                     f"{_cell(comparison['time_to_same_psnr_ratio'], '.1f')}x (target >= {TARGET_SPEEDUP:g}x).")
    lines += [f"- {note}" for note in report["notes"]]
    lines += [f"- {r['method']} failed: {r['error']}" for r in report["methods"] if r["status"] != "ok"]
    return "\n".join(lines) + "\n"


def write_report(report: Dict[str, object], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    stem.with_suffix(".md").write_text(markdown(report))


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the benchmark; 0 when every method ran."""
    args = parse_args(argv)
    report = run_benchmark(args)
    print(markdown(report), flush=True)
    print(f"[benchmark-neus2] wrote {args.output.with_suffix('.json')} and .md", flush=True)
    return 0 if all(r["status"] == "ok" for r in report["methods"]) else 1


if __name__ == "__main__":
    sys.exit(main())
