"""Benchmark methods on one scene: train for a step or wall-clock budget, then evaluate on the test split.

For each method this trains through nerfstudio's Trainer, reloads the saved config and checkpoint for the test
split (as ``ns-eval`` does), averages PSNR/SSIM/LPIPS over all test images and times full-image renders. Results
go to ``<output-dir>/<scene>-<date>_<time>.json`` (records plus provenance) and one markdown row per method is
appended to ``<output-dir>/results.md``. This is a benchmark, not a test: numbers depend on the machine.

    python scripts/benchmark_methods.py --methods ngpc-hashgrid instant-ngp --max-steps 5000
    python scripts/benchmark_methods.py --methods ngpc-hashgrid --reduced --max-steps 50 --device cpu
    python scripts/benchmark_methods.py --methods nerdf pvd-al --teacher-config outputs/.../config.yml
    python scripts/benchmark_methods.py --evaluate-runs outputs/fern/nerdf/<timestamp>/config.yml

Distillation (issue 12): ``--teacher-config`` trains each student on that teacher (on the teacher's scene) and
``--evaluate-runs`` scores saved runs without training; either way every student's teacher is evaluated too, and
``<output-dir>/distillation.md`` gets one row per model: PSNR/SSIM on the eval split, render FPS at the dataset's
resolution, parameter and checkpoint size, and the speed-up over the teacher.

Methods that need CUDA (nerfstudio's ``instant-ngp``: nerfacc's CUDA sampling) are skipped on CPU with a note.
Nothing is downloaded: without cached AlexNet weights, LPIPS is left out (``null``) for every method.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "scripts"):  # run from a checkout without `pip install -e .`, or imported
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import ng_methods  # noqa: E402,F401  (allow-lists nerfstudio checkpoints for torch>=2.6 safe loading)
from benchmark_evaluation import (  # noqa: E402
    evaluate, evaluate_pipeline, load_saved_run, offline_lpips, synchronizer,
)
from benchmark_report import TABLE_HEADER, append_markdown, markdown_row, write_distillation_table  # noqa: E402
from provenance import provenance  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "blender" / "lego"
NEVER = 10**9
REDUCED_SIZES = {  # set wherever a config (pipeline, model, field, sampler) has the field
    "target_num_samples": 1 << 16, "max_num_samples_per_ray": 64, "log2_hashmap_size": 15, "grid_resolution": 32,
    "render_step_size": 0.02, "occ_warmup_steps": 8, "occ_update_every": 8,
    "num_random": 2000, "num_downscales": 0,  # Gaussian methods: few random Gaussians, full resolution at once
}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["ngpc-hashgrid"], help="method names (ns-train's)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="scene directory")
    parser.add_argument("--dataparser", default="blender", help="'blender': a method's own Blender parser, else "
                        "nerfstudio's blender-data; 'method': each method's default; or a dataparser name")
    parser.add_argument("--skip-missing-images", action="store_true", help="with --dataparser ng-nerfstudio-data: "
                        "train on the frames whose images exist (instant-ngp's fox lists 67 frames, ships 50)")
    parser.add_argument("--max-steps", type=int, default=None, help="training steps per method")
    parser.add_argument("--time-budget-s", type=float, default=None, help="wall-clock training budget per method")
    parser.add_argument("--eval-split", default="test", choices=["test", "val"])
    parser.add_argument("--right-half", action="store_true", help="score every method on the right half of each "
                        "eval image (Splatfacto-W's protocol; splatfacto-wild fits its embedding on the left half)")
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks"))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--reduced", action="store_true", help="tiny sizes for a CPU smoke run")
    parser.add_argument("--teacher-config", type=Path, default=None, help="distillation students train on this "
                        "teacher (its config.yml) and scene; the teacher is evaluated too")
    parser.add_argument("--evaluate-runs", type=Path, nargs="+", default=[], help="score saved runs (config.yml) "
                        "and their teachers, without training")
    args = parser.parse_args(argv)
    for path in ([args.teacher_config] if args.teacher_config else []) + args.evaluate_runs:
        if not path.is_file():
            parser.error(f"{path}: no such config.yml (pass the config.yml ns-train saved)")
    if args.evaluate_runs:
        args.methods = []  # nothing to train: the saved runs name their own scenes
    elif not args.data.is_dir():
        parser.error(f"--data {args.data}: no such directory (pass a scene directory, e.g. a Blender scene)")
    elif args.dataparser == "blender" and not (args.data / "transforms_train.json").is_file():
        parser.error(f"--data {args.data}: no transforms_train.json, so not a Blender scene (see --dataparser)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def _local_methods() -> Dict[str, object]:
    """Our methods straight from ``method_configs`` (works before the package is pip-installed)."""
    import importlib
    import pkgutil

    from nerfstudio.plugins.types import MethodSpecification

    import method_configs

    specs = []
    for info in pkgutil.iter_modules(method_configs.__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"method_configs.{info.name}")
            specs += [v for v in vars(module).values() if isinstance(v, MethodSpecification)]
    return {spec.config.method_name: spec.config for spec in specs}


def method_config(name: str):
    """A private copy of the ``TrainerConfig`` of method ``name``."""
    from nerfstudio.configs.method_configs import all_methods

    config = all_methods.get(name)
    if config is None:  # ng-methods not pip-installed: its entry points are not registered
        config = _local_methods().get(name)
    if config is None or type(config).__name__ == "ExternalMethodDummyTrainerConfig":
        raise SystemExit(f"unknown or uninstalled method {name!r}; known: {', '.join(sorted(all_methods))}")
    return copy.deepcopy(config)


def cuda_only_reason(config) -> Optional[str]:
    """Why a method cannot train on CPU, or None."""
    from nerfstudio.models.instant_ngp import InstantNGPModelConfig
    from nerfstudio.models.splatfacto import SplatfactoModelConfig

    from ng_methods.splat.model import NGSplatModelConfig

    model = config.pipeline.model
    if isinstance(model, InstantNGPModelConfig):
        return "nerfstudio's instant-ngp marches rays with nerfacc's CUDA-only kernels"
    if isinstance(model, SplatfactoModelConfig) and not isinstance(model, NGSplatModelConfig):
        return "splatfacto rasterizes with gsplat's CUDA kernels"
    return None


def choose_dataparser(config, choice: str, data: Path, skip_missing_images: bool = False) -> None:
    from nerfstudio.configs.dataparser_configs import all_dataparsers
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    datamanager = config.pipeline.datamanager
    if choice == "blender" and not isinstance(datamanager.dataparser, BlenderDataParserConfig):
        datamanager.dataparser = BlenderDataParserConfig()
    elif choice not in ("blender", "method"):
        if choice not in all_dataparsers:
            raise SystemExit(f"unknown dataparser {choice!r}; known: {', '.join(sorted(all_dataparsers))}")
        datamanager.dataparser = copy.deepcopy(all_dataparsers[choice])
    datamanager.data = data
    datamanager.dataparser.data = data
    if skip_missing_images:
        if not hasattr(datamanager.dataparser, "skip_missing_images"):
            raise SystemExit(f"--skip-missing-images needs --dataparser ng-nerfstudio-data, not {choice!r}")
        datamanager.dataparser.skip_missing_images = True


def reduce_sizes(config) -> None:
    """Tiny sizes for a CPU smoke run (as ``tests/training.py:reduce_for_cpu`` and the NGPC method tests)."""
    pipeline, model = config.pipeline, config.pipeline.model
    pipeline.datamanager.train_num_rays_per_batch = pipeline.datamanager.eval_num_rays_per_batch = 1024
    model.eval_num_rays_per_chunk = 2500
    for part in (pipeline, model, getattr(model, "field", None), getattr(model, "sampler", None)):
        for name, value in REDUCED_SIZES.items():
            if part is not None and hasattr(part, name):
                setattr(part, name, value)


def prepare_config(name: str, args: argparse.Namespace):
    config = method_config(name)
    if args.teacher_config is not None and hasattr(config.pipeline.datamanager, "teacher_config"):
        config.pipeline.datamanager.teacher_config = args.teacher_config
        config.pipeline.datamanager.data = None  # a student trains on its teacher's scene and dataparser
    else:
        choose_dataparser(config, args.dataparser, args.data, args.skip_missing_images)
    if args.reduced:
        reduce_sizes(config)
    config.machine.device_type = args.device
    config.max_num_iterations = args.max_steps or (NEVER if args.time_budget_s else config.max_num_iterations)
    config.steps_per_save = NEVER  # one checkpoint, at the end of training
    config.save_only_latest_checkpoint = True
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = NEVER
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.output_dir = args.output_dir / "runs"
    config.experiment_name = args.data.name
    return config



class TrainClock:
    """Times the training iterations and stops the trainer once the wall-clock budget is spent."""

    def __init__(self, trainer, budget_s: Optional[float], sync: Callable[[], None]) -> None:
        self.trainer, self.budget_s, self.sync = trainer, budget_s, sync
        self.start: Optional[float] = None
        self.elapsed_s = 0.0
        self.steps = 0

    def begin(self, step: int) -> None:
        if self.start is None:
            self.sync()
            self.start = time.perf_counter()

    def end(self, step: int) -> None:
        self.sync()
        self.steps += 1
        self.elapsed_s = time.perf_counter() - self.start
        if self.budget_s is not None and self.elapsed_s >= self.budget_s:
            self.trainer.stop_training = True  # Trainer.train breaks before the next iteration

    def install(self) -> None:
        from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation as Where

        self.trainer.callbacks.insert(0, TrainingCallback([Where.BEFORE_TRAIN_ITERATION], self.begin))
        self.trainer.callbacks.append(TrainingCallback([Where.AFTER_TRAIN_ITERATION], self.end))


def peak_memory_mb(device: str) -> Dict[str, object]:
    if device == "cuda":
        return {"peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20, "peak_mem_kind": "cuda_max_allocated"}
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB, whole process so far
    return {"peak_mem_mb": rss_kib / 1024, "peak_mem_kind": "process_max_rss"}


def train(config, args: argparse.Namespace) -> Dict[str, object]:
    from nerfstudio.utils import writer

    writer.EVENT_WRITERS.clear()  # nerfstudio's writers are global: keep each run's logs in its own dir
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    with offline_lpips():
        trainer.setup()
    clock = TrainClock(trainer, args.time_budget_s, synchronizer(args.device))
    clock.install()
    trainer.train()
    record = {"steps": clock.steps, "train_time_s": clock.elapsed_s, **peak_memory_mb(args.device)}
    del trainer
    writer.EVENT_WRITERS.clear()
    return record


def benchmark_method(name: str, args: argparse.Namespace) -> Dict[str, object]:
    record: Dict[str, object] = {"method": name, "scene": args.data.name, "device": args.device}
    config = prepare_config(name, args)
    reason = cuda_only_reason(config) if args.device == "cpu" else None
    if reason is not None:
        print(f"[benchmark] SKIP {name}: needs CUDA ({reason}); run with a GPU.", flush=True)
        return {**record, "status": "skipped", "reason": f"needs CUDA: {reason}"}
    try:
        record.update(train(config, args))
        record.update(evaluate(config, args))
        record.update(status="ok", config_path=str(config.get_base_dir() / "config.yml"))
    except Exception as error:  # one failing method must not lose the others' results
        traceback.print_exc()
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
    finally:
        gc.collect()
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return record


def evaluate_saved_run(config_path: Path, args: argparse.Namespace) -> Dict[str, object]:
    """Score a saved run (``config.yml`` plus its checkpoint) on the eval split, without training."""
    saved = yaml.load(Path(config_path).read_text(), Loader=yaml.Loader)
    record: Dict[str, object] = {"method": saved.method_name, "device": args.device, "config_path": str(config_path)}
    try:
        pipeline, checkpoint = load_saved_run(config_path, args.eval_split, args.device)
        record["scene"] = Path(str(pipeline.datamanager.config.data)).name  # a student's: its teacher's scene
        record.update(evaluate_pipeline(pipeline, checkpoint, args), status="ok")
        del pipeline
    except Exception as error:  # one failing run must not lose the others' results
        traceback.print_exc()
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
    gc.collect()
    return record


def with_teachers(records: List[Dict[str, object]], args: argparse.Namespace) -> List[Dict[str, object]]:
    """Each evaluated teacher once, then the runs; a student (a run whose datamanager names a teacher) gets its
    teacher's method and its render speed-up over it."""
    teachers: Dict[str, Dict[str, object]] = {}
    for record in records:
        if record["status"] != "ok":
            continue
        saved = yaml.load(Path(record["config_path"]).read_text(), Loader=yaml.Loader)
        teacher_path = getattr(saved.pipeline.datamanager, "teacher_config", None)
        if teacher_path is None:
            record["role"] = "model"
            continue
        if str(teacher_path) not in teachers:
            teachers[str(teacher_path)] = {**evaluate_saved_run(Path(teacher_path), args), "role": "teacher"}
        teacher = teachers[str(teacher_path)]
        record.update(role="student", teacher=teacher["method"], teacher_config=str(teacher_path))
        if teacher.get("render_fps"):
            record["speedup_vs_teacher"] = record["render_fps"] / teacher["render_fps"]
    return list(teachers.values()) + [r for r in records if r["status"] == "ok"]


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark; returns 0 when every method that could run on this device succeeded."""
    args = parse_args(argv)
    command = list(sys.argv) if argv is None else ["scripts/benchmark_methods.py", *argv]
    prov = provenance(command, args.device, packages=("nerfstudio", "nerfacc", "ng-methods"))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    json_path = args.output_dir / f"{args.data.name}-{stamp}.json"
    settings = {k: str(v) if isinstance(v, Path) else [str(p) for p in v] if k == "evaluate_runs" else v
                for k, v in vars(args).items()}
    records: List[Dict[str, object]] = []
    for name in args.methods:
        records.append(benchmark_method(name, args))
        # Rewritten after every method, so an interrupted run keeps what it finished.
        json_path.write_text(json.dumps({"provenance": prov, "settings": settings, "results": records}, indent=2))
        if records[-1]["status"] == "ok":
            row = markdown_row(records[-1], prov)
            append_markdown(args.output_dir / "results.md", row)
            print(TABLE_HEADER + row, end="", flush=True)
    distillation: List[Dict[str, object]] = []
    if args.teacher_config is not None or args.evaluate_runs:
        records += [evaluate_saved_run(path, args) for path in args.evaluate_runs]
        distillation = with_teachers(records, args)
        write_distillation_table(args.output_dir / "distillation.md", distillation, prov)
        report = {"provenance": prov, "settings": settings, "results": records, "distillation": distillation}
        json_path.write_text(json.dumps(report, indent=2))
    print(f"[benchmark] wrote {json_path} and {args.output_dir / 'results.md'}", flush=True)
    return 1 if any(r["status"] == "failed" for r in records + distillation) else 0


if __name__ == "__main__":  # nerfstudio's ParallelDataManager spawns processes that re-import this module
    sys.exit(main())
