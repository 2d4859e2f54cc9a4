"""Stages 1-4 of ``scripts/gpu_check.py``: environment and ceilings, correctness tests, kernel throughput, NGPC profile.

Each function takes a ``StageContext`` and fills its figures, tables and targets; it raises only on a failure of the
whole stage, and appends to ``ctx.failures`` for a failed part (a failing test, a kernel that errors). The kernel
and profile stages run ``scripts/benchmark_kernels.py`` and ``scripts/profile_ngpc.py`` themselves (their ``main``),
so this file only chooses their arguments and reads their JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import types
from typing import Dict, List, Optional

from gpu_check_context import REPO_ROOT, StageContext, fmt, newest
from gpu_check_pytest import run_pytest

VERSION_PACKAGES = ("triton", "numpy", "nerfstudio", "gsplat", "nerfacc", "pytest", "tinycudann", "jaxtyping")
SEEN_ON_H200 = {"copy_gb_per_s": 4300, "bf16_tflops": "769-798 (random data)",
                "source": "/work/.library/device/KINDS.md, 2026-10-28 and 2026-11-04"}
NVIDIA_SMI_FIELDS = ("name", "driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem",
                     "power.draw", "temperature.gpu")
TINY_TESTS = ["tests/kernels/test_volume_rendering_reference.py", "tests/kernels/test_triton_fma.py",
              "tests/kernels/test_splat_reference.py", "-k", "not gradcheck"]
NGPC_BACKENDS = ("torch", "triton", "fused")


def nvidia_smi_clocks() -> Dict[str, object]:
    """Clocks, power and temperature from ``nvidia-smi`` (MHz, W, C), or why it could not be read."""
    query = ["nvidia-smi", f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}", "--format=csv,noheader,nounits"]
    try:
        line = subprocess.run(query, capture_output=True, text=True, timeout=15, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as error:
        return {"unavailable": f"{type(error).__name__}: {error}"[:200]}
    return dict(zip(NVIDIA_SMI_FIELDS, (cell.strip() for cell in line.split(","))))


def matmul_rate(device: str, n: int, repeats: int, warmup: int) -> Dict[str, object]:
    """bf16 ``n x n x n`` matrix product on random data: TFLOP/s = 2 n^3 / median seconds."""
    import torch

    from benchmark_kernels import measure

    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    times = measure(lambda: a @ b, device, repeats, warmup)
    return {"n": n, "dtype": "bfloat16", "median_s": statistics.median(times),
            "tflops": 2 * n**3 / statistics.median(times) / 1e12}


def cuda_extensions() -> Dict[str, str]:
    """Whether gsplat's and nerfacc's CUDA extensions load (only asked on a GPU: on CPU they would try to build)."""
    status = {}
    for package in ("gsplat", "nerfacc"):
        try:
            backend = __import__(f"{package}.cuda._backend", fromlist=["_C"])
            status[package] = "ok" if getattr(backend, "_C", None) is not None else "missing (_C is None)"
        except Exception as error:  # no wheel, or a build attempt that failed
            status[package] = f"{type(error).__name__}: {error}"[:300]
    return status


def environment(ctx: StageContext) -> None:
    """Versions, GPU, clocks, and the two ceilings: device-to-device copy bandwidth and the bf16 matmul rate."""
    import torch

    from benchmark_kernels import copy_bandwidth
    from provenance import gpu_description, provenance

    gpu = ctx.gpu
    prov = provenance(["scripts/gpu_check.py"], ctx.device, packages=VERSION_PACKAGES)
    ctx.figures.update(versions=prov["versions"], machine=prov["machine"],
                       triton_interpret=os.environ.get("TRITON_INTERPRET"))
    if gpu:
        props = torch.cuda.get_device_properties(0)
        ctx.figures["gpu"] = {**gpu_description("cuda"), "l2_mib": getattr(props, "L2_cache_size", 0) / 2**20}
        ctx.figures["clocks_before"] = nvidia_smi_clocks()
        ctx.figures["cuda_extensions"] = cuda_extensions()
        ctx.failures += [f"{name} CUDA extension: {state}" for name, state in ctx.figures["cuda_extensions"].items()
                         if state != "ok"]
        if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
            ctx.failures.append("TRITON_INTERPRET is set: the Triton kernels would run interpreted, not compiled")
    ctx.save()
    copy = copy_bandwidth(ctx.device, 2048 if gpu else 16, 20 if gpu else 3, 5 if gpu else 1)
    ctx.figures["copy_bandwidth"] = {k: v for k, v in copy.items() if k != "times_s"}
    ctx.figures["matmul"] = matmul_rate(ctx.device, 8192 if gpu else 128, 10 if gpu else 2, 3 if gpu else 1)
    if gpu:
        ctx.figures["clocks_after_matmul"] = nvidia_smi_clocks()
        ctx.figures["seen_before_on_h200"] = SEEN_ON_H200
    versions = prov["versions"]
    ctx.table("Environment and ceilings", ["what", "value"], [
        ["device", ctx.figures["gpu"]["name"] if gpu else f"cpu: {prov['machine']['cpu']}"],
        ["torch / triton / CUDA", f"{versions['torch']} / {versions['triton']} / {versions['cuda']}"],
        ["gsplat / nerfacc / nerfstudio", f"{versions['gsplat']} / {versions['nerfacc']} / {versions['nerfstudio']}"],
        ["copy bandwidth", f"{copy['gb_per_s']:.1f} GB/s (bytes read + written)"],
        ["bf16 matmul", f"{ctx.figures['matmul']['tflops']:.3g} TFLOP/s (n={ctx.figures['matmul']['n']})"],
        ["SM clock before / after matmul (MHz)", f"{sm_clock(ctx, 'clocks_before')} / "
                                                 f"{sm_clock(ctx, 'clocks_after_matmul')}"],
    ])


def sm_clock(ctx: StageContext, key: str) -> str:
    return str(ctx.figures.get(key, {}).get("clocks.sm", "—"))


def correctness(ctx: StageContext) -> None:
    """The tests of tests/kernels under pytest: on a GPU every kernel compiled and compared with its reference."""
    tests = ctx.options.get("tests") or (TINY_TESTS if ctx.tiny else ["tests/kernels"])
    log = ctx.output_dir / "logs" / "correctness-pytest.log"
    env = {k: v for k, v in os.environ.items() if not (ctx.gpu and k == "TRITON_INTERPRET")}  # compiled on a GPU
    summary = run_pytest(tests, log, ctx.output_dir / "logs" / "correctness-junit.xml",
                         timeout_s=max(ctx.seconds_left() - 10, 5), workers=ctx.options.get("pytest_workers", 0),
                         env=env)
    ctx.figures.update(summary)
    if summary.get("error"):
        ctx.failures.append(summary["error"])
    failed = summary.get("failures", [])
    ctx.failures += [f"{t['id']}: {t['message']}"[:300] + (f"\n{t['traceback'][-800:]}" if i < 10 else "")
                     for i, t in enumerate(failed)]
    counts = summary.get("counts", {})
    ran = counts.get("passed", 0) + counts.get("failed", 0) + counts.get("error", 0)
    ctx.condition("the tests of tests/kernels pass with compiled kernels (no kernel/reference mismatch)",
                  None if not ran else not failed and not summary.get("error"),
                  f"{counts.get('passed', 0)} passed, {counts.get('failed', 0) + counts.get('error', 0)} failed "
                  f"({summary.get('compiled_kernel_failures', 0)} of compiled kernels), {counts.get('skipped', 0)} "
                  "skipped", "all pass")
    ctx.table("Correctness (pytest " + " ".join(tests) + ")", ["file", "passed", "failed", "error", "skipped"],
              [[name, c.get("passed", 0), c.get("failed", 0), c.get("error", 0), c.get("skipped", 0)]
               for name, c in summary.get("per_file", {}).items()]
              + [["**all**", counts.get("passed", 0), counts.get("failed", 0), counts.get("error", 0),
                  counts.get("skipped", 0)]])
    if failed:
        ctx.table("Failed tests (short tracebacks in the JSON)", ["test", "compiled kernel", "message"],
                  [[t["id"], "yes" if t["compiled_kernel"] else "", t["message"][:160]] for t in failed])


KERNEL_CONFIGS = ("hashgrid-fp32", "multires-dense", "lowres-dense")
KERNEL_PARTS = ("hashgrid-fp32", "fused", "compositing", "multires-dense", "lowres-dense")
"""Measured in this order (the targets' figures first), each saved before the next starts."""
KEPT_FIELDS = ("config", "backend", "path", "mode", "n_points", "status", "reason", "median_s", "points_per_s",
               "bandwidth_fraction", "max_abs_diff_vs_torch", "speedup_vs_pytorch", "fused_backend")


def kernel_args(ctx: StageContext, part: str) -> List[str]:
    """Arguments of scripts/benchmark_kernels.py for one grid config at 2^18..2^22 points (tiny: 1024), or for the
    fused encoding+MLP comparison of the three NGPC encodings (``part == "fused"``, at 2^20 points)."""
    tiny = ctx.tiny or not ctx.gpu
    common = ["--device", ctx.device, "--repeats", "1" if tiny else "5", "--warmup", "0" if tiny else "2",
              "--copy-mib", "4" if tiny else "2048", "--output-dir", str(ctx.output_dir / "kernels" / part)]
    if part == "fused":  # its grid part runs the reference once at 1024 points (not reported)
        return [*common, "--configs", *KERNEL_CONFIGS, "--backends", "torch", "--sizes", "1024",
                "--fused-size", "1024" if tiny else "2^20"]
    sizes = ["1024"] if tiny else [f"2^{k}" for k in range(18, 23)]
    return [*common, "--configs", part, "--backends", "torch", "triton", "--sizes", *sizes, "--no-fused"]


def _find(records: List[Dict], **where) -> Optional[Dict]:
    return next((r for r in records if r["status"] == "ok" and all(r.get(k) == v for k, v in where.items())), None)


def _why_missing(records: List[Dict], **where) -> str:
    """Why no measurement matches ``where``: the record's reason, or that this size was not run."""
    record = next((r for r in records if all(r.get(k) == v for k, v in where.items())), None)
    return f"{record['status']}: {record.get('reason', '')}"[:160] if record else "not run at this size"


def kernel_targets(ctx: StageContext, part: str, records: List[Dict]) -> None:
    """README targets: hash grid >= 1e9 (fwd) / 3e8 (fwd+bwd) points/s at 2^21; fused >= 5x the plain path."""
    for mode, required in (("fwd", 1e9), ("fwd+bwd", 3e8)) if part == "hashgrid-fp32" else ():
        where = dict(config="hashgrid-fp32", backend="triton", mode=mode, n_points=2**21)
        record = _find(records, **where)
        ctx.target(f"hash-grid {mode}, Triton, 2^21 points (L=16, F=2, T=2^19)", record and record["points_per_s"],
                   required, "points/s", "" if record else _why_missing(records, **where))
    for mode in ("fwd", "fwd+bwd") if part == "fused" else ():
        where = dict(config="hashgrid-fp32", path="fused", mode=mode)
        record = _find(records, **where)
        note = f"at {record['n_points']} points, backend {record.get('fused_backend')}" if record else None
        ctx.target(f"fused encoding+MLP {mode} vs plain PyTorch path (hashgrid)",
                   record and record.get("speedup_vs_pytorch"), 5.0, "x", note or _why_missing(records, **where))


def kernel_tables(ctx: StageContext) -> None:
    """(Re)builds the stage's tables from the figures so far."""
    grid, fused, compositing = (ctx.figures.get(key, []) for key in ("grid", "fused", "compositing"))
    ctx.tables = []
    copies = ", ".join(f"{part} {gbps:.1f}" for part, gbps in ctx.figures.get("copy_gb_per_s", {}).items())
    ctx.table(f"Grid encoding: M points/s (% of the copy bandwidth measured with it, GB/s: {copies or '—'})",
              ["config", "backend", "mode", "points", "M pts/s", "% copy BW", "max |diff| vs torch"],
              [[r["config"], r["backend"], r["mode"], r["n_points"], fmt(r.get("points_per_s"), ".4g", 1e-6),
                fmt(r.get("bandwidth_fraction"), ".3g", 100), fmt(r.get("max_abs_diff_vs_torch"), ".2e")]
               if r["status"] == "ok" else [r["config"], r["backend"], r["mode"], r["n_points"], r["status"],
                                            r.get("reason", "")[:80], ""] for r in grid])
    ctx.table("Encoding + MLP: M points/s (speed-up vs the plain PyTorch path)",
              ["config", "path", "mode", "points", "M pts/s", "speed-up"],
              [[r["config"], r["path"], r["mode"], r["n_points"], fmt(r.get("points_per_s"), ".4g", 1e-6),
                fmt(r.get("speedup_vs_pytorch"), ".3g") if r["status"] == "ok" else r["status"]] for r in fused])
    ctx.table("Compositing, packed samples: M samples/s (% of copy BW, approximate bytes model)",
              ["backend", "mode", "rays x samples", "M samples/s", "% copy BW"],
              [[r["backend"], r["mode"], f"{r['n_rays']} x {r['samples_per_ray']}",
                fmt(r.get("samples_per_s"), ".4g", 1e-6),
                fmt(r.get("bandwidth_fraction"), ".3g", 100) if r["status"] == "ok" else r["reason"][:60]]
               for r in compositing])


def kernels(ctx: StageContext) -> None:
    """Grid encoding fwd / fwd+bwd points/s per encoding, fused encoding+MLP, compositing; fractions of copy BW."""
    import benchmark_kernels as bench

    ctx.figures.update(grid=[], fused=[], compositing=[], copy_gb_per_s={},
                       ceilings_from_environment=ctx.options.get("ceilings"))
    for part in KERNEL_PARTS:
        if part == "compositing":
            copy = (ctx.options.get("ceilings") or {}).get("copy_gb_per_s") or next(
                iter(ctx.figures["copy_gb_per_s"].values()), None)
            ctx.figures["compositing"] = compositing_throughput(ctx, copy)
        else:
            bench.main(kernel_args(ctx, part))
            report = json.loads(newest(ctx.output_dir / "kernels" / part, "kernels-*.json").read_text())
            ctx.figures["copy_gb_per_s"][part] = report["copy_bandwidth"]["gb_per_s"]
            records = [{k: r[k] for k in KEPT_FIELDS if k in r} for r in report["fused" if part == "fused"
                                                                                 else "results"]]
            ctx.figures["fused" if part == "fused" else "grid"] += records
            ctx.failures += [f"{r['config']} {r.get('backend', r.get('path'))} {r['mode']} n={r['n_points']}: "
                             f"{r['reason']}" for r in records if r["status"] == "failed"]
            kernel_targets(ctx, part, records)
        kernel_tables(ctx)
        ctx.save()


def compositing_throughput(ctx: StageContext, copy_gbps: Optional[float]) -> List[Dict]:
    """``composite`` over packed samples per backend (torch, triton, nerfacc), fwd and fwd+bwd, samples/s."""
    import torch

    import benchmark_kernels as bench
    from ng_methods.kernels import volume_rendering as vr

    n_rays, per_ray = (2**16, 64) if ctx.gpu and not ctx.tiny else (64, 8)
    n = n_rays * per_ray
    generator = torch.Generator(device=ctx.device).manual_seed(0)
    t_starts = (torch.arange(per_ray, device=ctx.device) / per_ray).repeat(n_rays)
    t_ends = t_starts + 1.0 / per_ray
    sigmas = (torch.rand(n, device=ctx.device, generator=generator) * 20).requires_grad_()
    rgbs = torch.rand(n, 3, device=ctx.device, generator=generator).requires_grad_()
    ray_indices = torch.arange(n_rays, device=ctx.device).repeat_interleave(per_ray)
    grad_out = torch.randn(n_rays, 3, device=ctx.device)
    timing = types.SimpleNamespace(device=ctx.device, repeats=10 if ctx.gpu else 1, warmup=3 if ctx.gpu else 0)
    bytes_per_sample = {"fwd": 4 * 7 + 8, "fwd+bwd": 2 * (4 * 7 + 8) + 4 * 4}  # inputs (+ weights) and ray index
    unavailable = {"torch": None, "triton": None if ctx.gpu and vr.triton_available() else "needs CUDA and Triton",
                   "nerfacc": None if ctx.gpu else "nerfacc's compositing needs CUDA"}
    records = []
    for backend, why in unavailable.items():
        forward = (lambda b=backend: vr.composite(t_starts, t_ends, sigmas, rgbs, ray_indices, n_rays, backend=b)[0])
        for mode in ("fwd", "fwd+bwd"):
            entry = {"backend": backend, "mode": mode, "n_points": n, "n_rays": n_rays, "samples_per_ray": per_ray}
            record = bench._timed(entry, why, forward, [sigmas, rgbs], grad_out, timing)
            if record["status"] == "ok":
                gbps = n * bytes_per_sample[mode] / record["median_s"] / 1e9
                record.update(bandwidth_fraction=gbps / copy_gbps if copy_gbps else None,
                              samples_per_s=record.pop("points_per_s"))
                record.pop("times_s", None)
            elif record["status"] == "failed":
                ctx.failures.append(f"compositing {backend} {mode}: {record['reason']}")
            records.append(record)
    return records


def ngpc_args(ctx: StageContext, backend: str) -> List[str]:
    """Arguments of scripts/profile_ngpc.py for one backend (tiny: the smoke sizes its own test uses)."""
    common = ["--backend", backend, "--output-dir", str(ctx.output_dir / "ngpc")]
    if ctx.tiny or not ctx.gpu:
        image = REPO_ROOT / "tests" / "data" / "lego-100" / "train" / "r_0.png"
        return ["--device", ctx.device, "--tiny", "--iterations", "1", "--warmup", "0", "--rays", "16", "--points",
                "256", "--volume-samples", "8", "--nerf-images", "2", "--image", str(image), *common]
    return ["--device", "cuda", "--iterations", "6", "--warmup", "2", *common]


def ngpc_row(backend: str, record: Dict) -> List:
    """One per-app table row: ms/iteration and the encoding / MLP / fused / other shares."""
    f = record.get("fractions", {})
    return ([backend, record["app"], record["encoding"], fmt(record.get("time_ms", {}).get("total"), ".3g")]
            + [fmt(f.get(part), ".1f", 100) for part in ("encoding", "mlp", "fused", "other")]
            + [fmt(record.get("encoding_plus_mlp_fraction"), ".1f", 100) if record["status"] == "ok"
               else f"{record['status']}: {record.get('reason', '')[:60]}"])


def ngpc_profile(ctx: StageContext) -> None:
    """scripts/profile_ngpc.py with the torch, triton and fused backends: encoding/MLP/other split vs the paper."""
    import profile_ngpc

    keep = ("app", "encoding", "status", "reason", "fractions", "encoding_plus_mlp_fraction", "median_total_ms")
    summary, results, rows = {}, {}, []
    ctx.figures.update(paper_percent=profile_ngpc.PAPER, summary=summary, results=results)
    for backend in NGPC_BACKENDS:
        profile_ngpc.main(ngpc_args(ctx, backend))
        report = json.loads(newest(ctx.output_dir / "ngpc", f"ngpc-profile-{backend}-{ctx.device}-*.json").read_text())
        summary[backend] = report["summary"]
        results[backend] = [{k: r[k] for k in keep if k in r} for r in report["results"]]
        ctx.failures += [f"{backend} {r['app']} {r['encoding']}: {r['reason']}"[:300]
                         for r in report["results"] if r["status"] == "failed"]
        rows += [ngpc_row(backend, r) for r in report["results"]]
        ctx.tables = []
        ctx.table("NGPC split: encoding + MLP share of a training iteration (mean over apps) vs the paper",
                  ["encoding", "paper %", *(f"{b} %" for b in summary)],
                  [[encoding, paper, *(fmt(summary[b][encoding]["measured_percent"], ".1f") for b in summary)]
                   for encoding, paper in profile_ngpc.PAPER.items()])
        ctx.table("NGPC per app", ["backend", "app", "encoding", "ms/iter", "enc %", "MLP %", "fused %", "other %",
                                   "enc+MLP %"], rows)
        ctx.save()
