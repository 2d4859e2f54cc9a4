"""One prepared command that checks every fast path on a GPU and measures every speed target of the README.

    python scripts/gpu_check.py --output-dir benchmarks                 # on a GPU: at most 9.5 minutes on an H200
    python scripts/gpu_check.py --device cpu --tiny --output-dir /tmp/x  # every stage on tiny sizes, CPU paths
    python scripts/gpu_check.py --export-data .gpu/data                  # trimmed scenes to carry to a GPU machine

Stages (``--stages``; ``methods`` selects the four methods stages), each in its own child process with its own
timeout, so a hang or a CUDA crash fails that stage only (recorded with its traceback or log tail) and the next runs:

1. ``environment``: versions, GPU, clocks; device-to-device copy bandwidth and bf16 matmul rate (the ceilings);
2. ``correctness``: pytest on tests/kernels (compiled Triton kernels vs references, our rasteriser vs gsplat,
   compositing vs nerfacc): per-file pass/fail counts and the failures' short tracebacks;
3. ``kernels``: scripts/benchmark_kernels.py (grid encoding points/s at 2^18..2^22 for the three NGPC encodings,
   fused encoding+MLP vs plain PyTorch) plus compositing, as fractions of the copy bandwidth;
4. ``ngpc-profile``: scripts/profile_ngpc.py with the torch, triton and fused backends vs the paper's split;
5. ``methods-nerf``, ``methods-splat``, ``methods-dynamic``: see scripts/gpu_check_methods.py;
6. ``methods-surfaces``: neus2 on DTU scan65 (reduced run, projected 15k-step time, mesh, floaters) against
   neus-facto at equal wall-clock: see scripts/gpu_check_surfaces.py and scripts/benchmark_neus2.py.

Writes ``<output-dir>/gpu-check-<device>-<stamp>.{json,md}`` (rewritten after every stage; provenance included),
each stage's log under ``logs/`` and the scripts' own outputs under ``kernels/``, ``ngpc/`` and ``methods/``. Targets
are reported as measured figures next to the target (met / not met on a GPU, ``n/a on cpu`` in CPU mode).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "scripts"):  # run from a checkout without `pip install -e .`, or imported
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from gpu_check_context import StageContext  # noqa: E402
from gpu_check_report import console_summary, markdown  # noqa: E402
from gpu_check_stages import VERSION_PACKAGES  # noqa: E402


class Stage(NamedTuple):
    """A stage: its function (``module:function``) and timeouts in seconds on a GPU (H200) and in CPU tiny mode."""

    name: str
    function: str
    gpu_timeout_s: float
    cpu_timeout_s: float


STAGES = (  # GPU timeouts sum to 630 s, cut to GPU_TOTAL_S; estimates no H200 run has checked (--timeout-scale)
    Stage("environment", "gpu_check_stages:environment", 25, 120),
    Stage("correctness", "gpu_check_stages:correctness", 100, 240),
    Stage("kernels", "gpu_check_stages:kernels", 55, 180),
    Stage("ngpc-profile", "gpu_check_stages:ngpc_profile", 60, 240),
    Stage("methods-nerf", "gpu_check_methods:methods_nerf", 150, 300),
    Stage("methods-splat", "gpu_check_methods:methods_splat", 50, 300),
    Stage("methods-dynamic", "gpu_check_methods:methods_dynamic", 40, 300),
    Stage("methods-surfaces", "gpu_check_surfaces:methods_surfaces", 150, 300),
)
STAGE_NAMES = [stage.name for stage in STAGES]
ALIASES = {"methods": ["methods-nerf", "methods-splat", "methods-dynamic", "methods-surfaces"], "all": STAGE_NAMES}
GPU_TOTAL_S = 560
"""Under a device call's 600 s with the ~20 s wheel set-up; the last stage (methods-surfaces) absorbs overruns."""


def default_data_root() -> Path:
    """``../shared/data`` when present (a development checkout), else ``.gpu/data`` (carried to a GPU machine)."""
    candidates = [REPO_ROOT.parent / "shared" / "data", REPO_ROOT / ".gpu" / "data"]
    return next((path for path in candidates if path.is_dir()), candidates[0])


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes through the CPU paths (implied on CPU)")
    parser.add_argument("--stages", nargs="+", default=["all"], choices=[*STAGE_NAMES, *ALIASES])
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks"))
    parser.add_argument("--data", type=Path, default=default_data_root(),
                        help="data root holding blender/lego, dnerf/lego and dtu/scan65 (default ../shared/data or "
                        ".gpu/data)")
    parser.add_argument("--total-budget-s", type=float, default=None,
                        help=f"cuts the last stages' timeouts to fit; default {GPU_TOTAL_S} on a GPU, none on CPU")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiplies every stage's timeout")
    parser.add_argument("--nerf-budget-s", type=float, default=45.0, help="training time of each NeRF method")
    parser.add_argument("--splat-budget-s", type=float, default=10.0, help="training time cap, Gaussian methods")
    parser.add_argument("--splat-max-steps", type=int, default=2000)
    parser.add_argument("--dynamic-budget-s", type=float, default=10.0, help="training time cap of 4d-rotor-gs")
    parser.add_argument("--dynamic-max-steps", type=int, default=2000)
    parser.add_argument("--surface-budget-s", type=float, default=20.0,
                        help="training time of neus2 on scan65 (neus-facto gets as much)")
    parser.add_argument("--surface-mesh-resolution", type=int, default=512)
    parser.add_argument("--pytest-workers", type=int, default=None,
                        help="pytest-xdist workers for the correctness stage (default 8 on a GPU when installed)")
    parser.add_argument("--tests", nargs="+", default=None, help="pytest arguments for the correctness stage")
    parser.add_argument("--scratch-dir", type=Path, default=None,
                        help="training runs, checkpoints and scene subsets (default <output-dir>/scratch)")
    parser.add_argument("--export-data", type=Path, default=None, metavar="DIR",
                        help="only copy the trimmed scenes of --data to DIR (to carry to a GPU machine), then exit")
    parser.add_argument("--run-stage", type=Path, default=None, help=argparse.SUPPRESS)  # the child's entry point
    args = parser.parse_args(argv)
    if args.run_stage is None and args.export_data is None:
        resolve_device(args, parser)
    return args


def resolve_device(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.tiny = args.tiny or args.device == "cpu"
    args.stages = [name for name in STAGE_NAMES
                   if any(name == choice or name in ALIASES.get(choice, ()) for choice in args.stages)]
    if args.total_budget_s is None and args.device == "cuda" and not args.tiny:
        args.total_budget_s = GPU_TOTAL_S
    if args.pytest_workers is None:
        args.pytest_workers = 8 if args.device == "cuda" else 0
    args.output_dir = args.output_dir.resolve()
    args.scratch_dir = (args.scratch_dir or args.output_dir / "scratch").resolve()
    args.data = args.data.resolve()


def stage_options(args: argparse.Namespace) -> Dict[str, object]:
    keys = ("nerf_budget_s", "splat_budget_s", "splat_max_steps", "dynamic_budget_s", "dynamic_max_steps",
            "surface_budget_s", "surface_mesh_resolution", "pytest_workers", "tests")
    return {**{key: getattr(args, key) for key in keys}, "scratch_dir": str(args.scratch_dir),
            "ceilings": getattr(args, "ceilings", None)}


def ceilings(result: Dict[str, object]) -> Optional[Dict[str, float]]:
    """The environment stage's copy bandwidth and bf16 matmul rate, handed to the later stages."""
    figures = result.get("figures", {})
    if "copy_bandwidth" not in figures or "matmul" not in figures:
        return None
    return {"copy_gb_per_s": figures["copy_bandwidth"]["gb_per_s"], "bf16_tflops": figures["matmul"]["tflops"]}


def run_stage(settings_path: Path) -> int:
    """The child: runs one stage and writes its result (status ok / failed / skipped, figures, error)."""
    ctx = StageContext.load(settings_path)
    ctx.save()
    module_name, function_name = next(s.function for s in STAGES if s.name == ctx.name).split(":")
    try:
        getattr(importlib.import_module(module_name), function_name)(ctx)
    except BaseException:  # a script's SystemExit included: the stage failed, the check goes on
        traceback.print_exc()
        ctx.save("failed", traceback.format_exc()[-6000:])
        return 1
    status = "skipped" if ctx.skipped else "failed" if ctx.failures else "ok"
    ctx.save(status, "\n".join(ctx.failures)[:8000] or None)
    return 0


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _exit_text(code: int) -> str:
    if code < 0:
        with_name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return f"killed by signal {with_name}"
    return f"exit code {code}"


def run_child(command: List[str], log_path: Path, timeout_s: float,
              env: Optional[Dict[str, str]] = None) -> Optional[int]:
    """Runs ``command`` in its own process group, output to ``log_path``; None when it hit ``timeout_s`` (then
    the group gets SIGTERM, so the stage can stop its own children, and SIGKILL 5 s later)."""
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, None)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            process.wait()
            return None


def stage_result(ctx: StageContext, code: Optional[int], seconds: float, log_path: Path) -> Dict[str, object]:
    """The child's result, completed with what the parent saw (a timeout, a crash without a result)."""
    try:
        result = json.loads(ctx.result_path.read_text())
    except (OSError, ValueError):
        result = {"name": ctx.name, "figures": {}, "tables": [], "targets": [], "failures": []}
    crashed = code is not None and result.get("status") in (None, "running")
    if code is None:
        result.update(status="failed", error=f"timed out after {ctx.timeout_s:.0f} s: stage killed (figures "
                      f"measured before are kept). Log tail:\n{_log_tail(log_path)}")
    elif crashed:
        result.update(status="failed", error=f"the stage's process ended without a result ({_exit_text(code)}), "
                      f"e.g. a CUDA crash. Log tail:\n{_log_tail(log_path)}")
    result.update(seconds=seconds, timeout_s=ctx.timeout_s, log=str(log_path.relative_to(ctx.output_dir)))
    return result


def run_in_child(stage: Stage, args: argparse.Namespace, timeout_s: float) -> Dict[str, object]:
    stages_dir, logs_dir = args.output_dir / "stages", args.output_dir / "logs"
    stages_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(name=stage.name, device=args.device, tiny=args.tiny, output_dir=args.output_dir,
                       data_root=args.data, timeout_s=timeout_s, options=stage_options(args),
                       result_path=stages_dir / f"{stage.name}.result.json")
    ctx.result_path.unlink(missing_ok=True)
    settings = stages_dir / f"{stage.name}.settings.json"
    settings.write_text(json.dumps(ctx.settings(), indent=1))
    log_path = logs_dir / f"{stage.name}.log"
    start = time.monotonic()
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if args.device == "cpu" else {})}  # cpu: really CPU
    code = run_child([sys.executable, str(Path(__file__).resolve()), "--run-stage", str(settings)], log_path,
                     timeout_s, env)
    return stage_result(ctx, code, time.monotonic() - start, log_path)


def skipped(name: str, reason: str) -> Dict[str, object]:
    return {"name": name, "status": "skipped", "seconds": 0.0, "skip_reason": reason, "figures": {}, "tables": [],
            "targets": [], "failures": [], "error": None}


def commit_without_git(prov: Dict[str, object]) -> None:
    """On a machine whose copy of the checkout has no git history: the commit written to .gpu/source-commit
    right before the device call (scripts/gpu_check_on_device.sh says how)."""
    path = REPO_ROOT / ".gpu" / "source-commit"
    if prov["git_commit"] is None and path.is_file():
        described = path.read_text().strip()
        prov.update(git_commit=described.removesuffix("-dirty"), git_dirty=described.endswith("-dirty"),
                    git_commit_source=".gpu/source-commit (written before the device call)")


def write_report(report: Dict, stem: Path) -> None:
    report["targets"] = [target for stage in report["stages"] for target in stage.get("targets", [])]
    counts = {status: sum(s["status"] == status for s in report["stages"]) for status in ("ok", "failed", "skipped")}
    report["summary"] = {**counts, "seconds": sum(s["seconds"] for s in report["stages"])}
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    stem.with_suffix(".md").write_text(markdown(report))


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the selected stages; returns 0 when none failed."""
    args = parse_args(argv)
    if args.run_stage is not None:
        return run_stage(args.run_stage)
    if args.export_data is not None:
        from gpu_check_methods import export_device_data

        for path in export_device_data(args.data.resolve(), args.export_data.resolve()):
            print(f"[gpu-check] wrote {path}", flush=True)
        return 0
    from provenance import provenance

    command = list(sys.argv) if argv is None else ["scripts/gpu_check.py", *argv]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"gpu-check-{args.device}-{datetime.datetime.now().strftime('%Y-%m-%d_%H%M%S')}"
    report = {"provenance": provenance(command, args.device, packages=VERSION_PACKAGES), "device": args.device,
              "tiny": args.tiny, "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "stages": []}
    commit_without_git(report["provenance"])
    deadline = time.monotonic() + (args.total_budget_s or float("inf"))
    for stage in (s for s in STAGES if s.name in args.stages):
        timeout = (stage.gpu_timeout_s if args.device == "cuda" and not args.tiny else stage.cpu_timeout_s)
        timeout = min(timeout * args.timeout_scale, deadline - time.monotonic())
        print(f"[gpu-check] {stage.name}: running (timeout {timeout:.0f} s)", flush=True)
        result = (run_in_child(stage, args, timeout) if timeout >= 5
                  else skipped(stage.name, f"under 5 s for it (total budget {args.total_budget_s} s, timeout scale "
                                           f"{args.timeout_scale})"))
        report["stages"].append(result)
        if stage.name == "environment":
            args.ceilings = ceilings(result)
        print(f"[gpu-check] {stage.name}: {result['status']} in {result['seconds']:.1f} s", flush=True)
        write_report(report, stem)
    print(console_summary(report) + f"\n[gpu-check] wrote {stem}.json and {stem}.md", flush=True)
    return 1 if report["summary"]["failed"] else 0


if __name__ == "__main__":  # nerfstudio's data managers may spawn processes that re-import this module
    sys.exit(main())
