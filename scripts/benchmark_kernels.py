"""Benchmark the grid-encoding kernels (points/s) against the device's own memory bandwidth.

Per grid config (hashgrid with fp32 / fp16 table, multi-res dense, low-res dense), batch size and backend (``torch``
reference, ``triton``, ``tcnn``; unavailable ones recorded with the reason): forward (``no_grad``) and forward+backward
(``torch.autograd.grad`` to the table) of ``grid_encode``, warm-up calls then the median of ``--repeats`` calls, each
bracketed by CUDA events (GPU) or ``time.perf_counter`` (CPU). Ceiling: a device-to-device copy timed the same way
(bytes moved = 2 x size); a "useful bytes" model per config (``bytes_model`` in the JSON) gives the achieved fraction
(> 1: gathers served from cache; << 1: latency/compute bound). With ``ng_methods.kernels.fused_mlp`` importable, the
fused ``encode_and_mlp`` is compared at ``--fused-size`` points with reference encoding + ``TinyMLP`` and Triton
encoding + ``TinyMLP``. ``--second-order`` (GPU only; skipped with a note on CPU) times an eikonal step, forward +
``d sdf/dx`` (create_graph) + the double backward to the table and weights, for the same three paths.
Needs only torch (+ Triton on a GPU) and numpy, never nerfstudio. Writes
``<output-dir>/kernels-<device>-<stamp>.json`` (with provenance) and ``.md``.

    python scripts/benchmark_kernels.py                       # GPU: 2^14 ... 2^22 points
    python scripts/benchmark_kernels.py --device cpu --sizes 1024 4096 --repeats 1
    python scripts/benchmark_kernels.py --second-order --no-fused --backends torch   # + eikonal double backward
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import math
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "scripts"):  # run from a checkout without `pip install -e .`, or imported
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


class _NoAnnotation:  # jaxtyping stand-in: Float[Tensor, "n d"] is _NoAnnotation
    __class_getitem__ = classmethod(lambda cls, item: cls)


def ensure_jaxtyping() -> None:
    """ng_methods annotates with jaxtyping; without it (a bare GPU box) a stub whose ``Float[...]`` etc. do nothing."""
    try:
        import jaxtyping  # noqa: F401
    except ImportError:
        stub = types.ModuleType("jaxtyping")
        stub.__dict__.update(dict.fromkeys(("Float", "Int", "Bool", "Shaped", "Num", "Int64"), _NoAnnotation))
        sys.modules["jaxtyping"] = stub


ensure_jaxtyping()

from ng_methods.kernels.grid_encoding import (  # noqa: E402
    GridSpec, grid_encode, hashgrid_spec, lowres_densegrid_spec, multires_densegrid_spec, tcnn_unavailable_reason,
    triton_available,
)
from ng_methods.networks import TinyMLP  # noqa: E402
from provenance import provenance  # noqa: E402

CONFIGS: Dict[str, Tuple[Callable[[], GridSpec], torch.dtype]] = {
    "hashgrid-fp32": (hashgrid_spec, torch.float32),
    "hashgrid-fp16": (hashgrid_spec, torch.float16),
    "multires-dense": (multires_densegrid_spec, torch.float32),
    "lowres-dense": (lowres_densegrid_spec, torch.float32),
}
BACKENDS = ("torch", "triton", "tcnn")
MODES = ("fwd", "fwd+bwd")


def resolve_device(choice: str) -> str:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return ("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timestamp(device: str):
    """A CUDA event recorded now on the current stream (GPU), or ``time.perf_counter()`` (CPU ops are synchronous)."""
    if device != "cuda":
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def elapsed_s(start, end) -> float:
    return end - start if isinstance(start, float) else start.elapsed_time(end) / 1e3


def measure(fn: Callable[[], object], device: str, repeats: int, warmup: int) -> List[float]:
    """Seconds per call of ``fn`` for ``repeats`` calls after ``warmup`` untimed ones (CUDA events on a GPU)."""
    for _ in range(warmup):  # no sync needed after: an interval starts at its event's place in the stream
        fn()
    spans = []
    for _ in range(repeats):
        start = timestamp(device)
        fn()
        spans.append((start, timestamp(device)))
    synchronize(device)
    return [elapsed_s(start, end) for start, end in spans]


def load_fused() -> Tuple[Optional[Callable], Optional[str]]:
    """``(encode_and_mlp, None)`` or ``(None, why it is unavailable)``."""
    try:
        from ng_methods.kernels.fused_mlp import encode_and_mlp
    except Exception as error:  # not written yet, no Triton, no driver...
        return None, f"{type(error).__name__}: {error}"
    return encode_and_mlp, None


def fused_kernel_backend(device: str) -> str:
    """The ``backend`` passed to ``encode_and_mlp``: its Triton kernel on a GPU, its reference on CPU."""
    return "triton" if device == "cuda" else "torch"


def short_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:400]


def parse_size(text: str) -> int:  # 16384, 2^14 or 2**14
    return 2 ** int(text.replace("**", "^").split("^")[1]) if "^" in text or "**" in text else int(text)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                        help="batch sizes (e.g. 16384 or 2^14); default 2^14 ... 2^max-log2")
    parser.add_argument("--max-log2", type=int, default=None, help="sizes 2^14 ... 2^max-log2; default 22 GPU, 16 CPU")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (median); default 20 GPU, 3 CPU")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls first; default 5 GPU, 1 CPU")
    parser.add_argument("--copy-mib", type=int, default=None, help="bandwidth copy size; default 2048 GPU, 256 CPU")
    parser.add_argument("--fused-size", type=parse_size, default=None,
                        help="points for the fused encoding+MLP comparison; default 2^18 on a GPU, max(--sizes) on CPU")
    parser.add_argument("--no-fused", action="store_true", help="skip the fused encoding+MLP comparison")
    parser.add_argument("--second-order", action="store_true",
                        help="also time an eikonal step (double backward) at --fused-size points; GPU only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks"))
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    gpu = args.device == "cuda"
    if args.sizes is None:
        max_log2 = args.max_log2 if args.max_log2 is not None else (22 if gpu else 16)
        args.sizes = [2**k for k in range(14, max_log2 + 1)]
    args.repeats = args.repeats or (20 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    args.copy_mib = args.copy_mib or (2048 if gpu else 256)
    args.fused_size = args.fused_size or (2**18 if gpu else max(args.sizes))
    return args


def copy_bandwidth(device: str, mib: int, repeats: int, warmup: int) -> Dict[str, object]:
    """Device-to-device copy of ``mib`` MiB: GB/s = 2 * bytes / median seconds (one read + one write)."""
    nbytes = mib * 2**20
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    times = measure(lambda: dst.copy_(src), device, max(repeats, 3), max(warmup, 1))
    return {"bytes": nbytes, "bytes_moved": 2 * nbytes, "median_s": statistics.median(times), "times_s": times,
            "gb_per_s": 2 * nbytes / statistics.median(times) / 1e9}


def bytes_model(spec: GridSpec, dtype: torch.dtype) -> Dict[str, object]:
    """Useful bytes per point (and per call) for the forward and the forward+backward; see the module docstring."""
    elem = torch.empty(0, dtype=dtype).element_size()
    corners, features = 2**spec.n_dims * spec.n_levels, spec.n_levels * spec.n_features_per_level
    fwd = 4 * spec.n_dims + features * elem + corners * spec.n_features_per_level * elem
    bwd = 4 * spec.n_dims + features * elem + 2 * corners * spec.n_features_per_level * 4
    return {"per_point": {"fwd": fwd, "fwd+bwd": fwd + bwd},
            "per_call": {"fwd": 0, "fwd+bwd": spec.n_params * spec.n_features_per_level * 4},
            "description": "fwd: positions (4*d) + outputs (L*F*b) + gathered corners (2^d*L*F*b); bwd: positions "
                           "+ grad outputs (L*F*b) + 2^d*L*F float32 gradient atomics x2 (read+write), plus a zeroed "
                           "float32 gradient table per call; b = bytes per table element"}


def backend_status(backend: str, device: str, spec: GridSpec, dtype: torch.dtype) -> Optional[str]:
    """None when ``backend`` can run this config here, else the reason."""
    if backend == "triton" and device != "cuda":
        return "the Triton kernels need a CUDA device"
    if backend == "triton":
        return None if triton_available() else "ng_methods.kernels.grid_encoding.triton (or Triton) does not import"
    return None if backend == "torch" else tcnn_unavailable_reason(device, dtype, spec)


def _step(forward: Callable[[], torch.Tensor], mode: str, inputs: List[torch.Tensor], grad_out) -> Callable:
    """``fwd``: ``forward()`` under no_grad; ``fwd+bwd``: ``forward()`` then its gradient w.r.t. ``inputs``."""
    if mode == "fwd":
        return torch.no_grad()(forward)
    if mode == "eikonal":  # `forward` is the whole step
        return forward
    return lambda: torch.autograd.grad(forward(), inputs, grad_out)


def bench_grid(args, name: str, copy_gbps: float) -> Tuple[Dict, List[Dict]]:
    spec, dtype = CONFIGS[name][0](), CONFIGS[name][1]
    model = bytes_model(spec, dtype)
    elem = torch.empty(0, dtype=dtype).element_size()
    info = {"spec": dataclasses.asdict(spec), "table_dtype": str(dtype).replace("torch.", ""), "bytes_model": model,
            "n_params": spec.n_params, "table_bytes": spec.n_params * spec.n_features_per_level * elem}
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    table = ((torch.rand(spec.n_params, spec.n_features_per_level, device=args.device, generator=generator) - 0.5)
             * 2e-2).to(dtype).requires_grad_()
    results = []
    for backend in args.backends:
        why = backend_status(backend, args.device, spec, dtype)
        info.setdefault("backend_unavailable", {})[backend] = why
        if why:
            print(f"[kernels] {name} {backend}: unavailable ({why})", flush=True)
        for n_points in args.sizes:
            positions = torch.rand(n_points, spec.n_dims, device=args.device, generator=generator)
            for mode in MODES:
                entry = {"config": name, "backend": backend, "mode": mode, "n_points": n_points}
                if why is None and backend != "torch" and n_points == args.sizes[0] and mode == "fwd":
                    entry["max_abs_diff_vs_torch"] = _max_diff(positions, table, spec, backend)
                grad_out = torch.randn(n_points, spec.n_output_dims, device=args.device, dtype=dtype)
                forward = functools.partial(grid_encode, positions, table, spec, backend)
                record = _timed(entry, why, forward, [table], grad_out, args)
                if record["status"] == "ok":
                    nbytes = n_points * model["per_point"][mode] + model["per_call"][mode]
                    gbps = nbytes / record["median_s"] / 1e9
                    record.update(bytes=nbytes, achieved_gb_per_s=gbps, bandwidth_fraction=gbps / copy_gbps)
                results.append(record)
                if why is None:
                    print(_progress(record), flush=True)
    return info, results


@torch.no_grad()
def _max_diff(positions, table, spec: GridSpec, backend: str) -> Optional[float]:
    """Largest |backend - reference| feature (None when the backend fails: its timing records why)."""
    with contextlib.suppress(Exception):
        return (grid_encode(positions, table, spec, backend).float() - grid_encode(positions, table, spec, "torch")
                .float()).abs().max().item()


def _timed(entry: Dict, why: Optional[str], forward: Callable, inputs: List, grad_out, args) -> Dict:
    if why is not None:
        return {**entry, "status": "unavailable", "reason": why}
    try:
        times = measure(_step(forward, entry["mode"], inputs, grad_out), args.device, args.repeats, args.warmup)
        median = statistics.median(times)
        return {**entry, "status": "ok", "median_s": median, "times_s": times,
                "points_per_s": entry["n_points"] / median}
    except Exception as error:  # OOM, a kernel that rejects this config...
        return {**entry, "status": "failed", "reason": short_error(error)}
    finally:
        if args.device == "cuda":
            torch.cuda.empty_cache()


def bench_fused(args, name: str) -> List[Dict]:
    """encode_and_mlp vs reference encoding + TinyMLP (and Triton encoding + TinyMLP) at ``--fused-size`` points."""
    spec, dtype = CONFIGS[name][0](), CONFIGS[name][1]
    encode_and_mlp, fused_why = load_fused()
    triton_why = backend_status("triton", args.device, spec, dtype)
    torch.manual_seed(args.seed)
    mlp = TinyMLP(spec.n_output_dims, 16, hidden_dim=64, hidden_layers=1).to(args.device, dtype)
    weights = [layer.weight for layer in mlp.layers]
    table = ((torch.rand(spec.n_params, spec.n_features_per_level, device=args.device) - 0.5) * 2e-2).to(dtype)
    positions = torch.rand(args.fused_size, spec.n_dims, device=args.device)
    grad_out = torch.randn(args.fused_size, mlp.out_dim, device=args.device, dtype=dtype)
    kernel_backend = fused_kernel_backend(args.device)
    paths = {
        "pytorch": (None, lambda: mlp(grid_encode(positions, table, spec, "torch"))),
        "triton-encoding+pytorch-mlp": (triton_why, lambda: mlp(grid_encode(positions, table, spec, "triton"))),
        "fused": (fused_why, lambda: encode_and_mlp(positions, table, spec, weights, backend=kernel_backend)),
    }
    results = []
    for path, (why, forward) in paths.items():
        for mode in MODES:
            entry = {"config": name, "path": path, "mode": mode, "n_points": args.fused_size,
                     "mlp": {"in": mlp.in_dim, "out": mlp.out_dim, "hidden": 64, "hidden_layers": 1}}
            entry.update({"fused_backend": kernel_backend} if path == "fused" else {})
            results.append(_timed(entry, why, forward, [table.requires_grad_(), *weights], grad_out, args))
            print(_progress(results[-1]), flush=True)
    baseline = {r["mode"]: r["median_s"] for r in results if r["path"] == "pytorch" and r["status"] == "ok"}
    return [{**r, "speedup_vs_pytorch": baseline[r["mode"]] / r["median_s"]} if "median_s" in r
            and r["mode"] in baseline else r for r in results]


def bench_second_order(args, name: str) -> List[Dict]:
    """Eikonal step at ``--fused-size`` points: sdf = output 0, ``d sdf/dx`` with create_graph, then the gradient of
    ``mean((|d sdf/dx| - 1)^2)`` w.r.t. the table and every weight (fp32 table: the double backward's dtype)."""
    spec = CONFIGS[name][0]()
    encode_and_mlp, fused_why = load_fused()
    torch.manual_seed(args.seed)
    mlp = TinyMLP(spec.n_output_dims, 16, hidden_dim=64, hidden_layers=1).to(args.device)
    weights = [layer.weight for layer in mlp.layers]
    table = ((torch.rand(spec.n_params, spec.n_features_per_level, device=args.device) - 0.5) * 2e-2).requires_grad_()
    positions = torch.rand(args.fused_size, spec.n_dims, device=args.device)
    paths = {
        "pytorch": (None, lambda p: mlp(grid_encode(p, table, spec, "torch"))),
        "triton-encoding+pytorch-mlp": (backend_status("triton", args.device, spec, torch.float32),
                                        lambda p: mlp(grid_encode(p, table, spec, "triton"))),
        "fused": (fused_why, lambda p: encode_and_mlp(p, table, spec, weights, backend="triton")),
    }

    def eikonal_step(forward: Callable) -> Callable:
        def step():
            p = positions.clone().requires_grad_()
            (grad_x,) = torch.autograd.grad(forward(p)[:, 0].sum(), p, create_graph=True)
            return torch.autograd.grad(((grad_x.norm(dim=1) - 1) ** 2).mean(), [table, *weights])
        return step

    results = []
    for path, (why, forward) in paths.items():
        entry = {"config": name, "path": path, "mode": "eikonal", "n_points": args.fused_size}
        results.append(_timed(entry, why, eikonal_step(forward), [], None, args))
        print(_progress(results[-1]), flush=True)
    return results


def _progress(r: Dict) -> str:
    what = f"[kernels] {r['config']:<15} {r.get('backend', r.get('path')):<28} {r['mode']:<8} n={r['n_points']:<8}"
    if r["status"] != "ok":
        return f"{what} {r['status']}: {r['reason']}"
    share = f"{100 * r['bandwidth_fraction']:.1f}% of copy BW" if "bandwidth_fraction" in r else ""
    return f"{what} {r['points_per_s'] / 1e6:10.2f} Mpts/s {1e3 * r['median_s']:9.3f} ms {share}"


def _num(value: float) -> str:  # 0.00123, 45.6, 1234
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _size_label(n: int) -> str:
    return f"2^{int(math.log2(n))}" if n > 0 and n & (n - 1) == 0 else str(n)


def _rows(records: List[Dict], keys: Tuple[str, ...], column: str, columns: list, cell: Callable) -> List[str]:
    rows: Dict[tuple, Dict] = {}
    for r in records:
        rows.setdefault(tuple(r[k] for k in keys), {})[r[column]] = cell(r) if r["status"] == "ok" else r["status"]
    return [f"| {' | '.join(key)} | " + " | ".join(cells.get(c, "—") for c in columns) + " |"
            for key, cells in rows.items()]


def markdown(report: Dict) -> str:
    prov, copy, machine = report["provenance"], report["copy_bandwidth"], report["provenance"]["machine"]
    commit = (prov["git_commit"] or "no-commit")[:10] + ("-dirty" if prov["git_dirty"] else "")
    sizes, versions = report["settings"]["sizes"], prov["versions"]
    lines = [
        "# Grid-encoding kernel benchmark", "",
        f"- date: {prov['date']}; device: {report['device']} "
        f"({machine['gpu']['name'] if machine['gpu'] else machine['cpu']}, {machine['cpu_count']} cpu)",
        f"- torch {versions['torch']}, triton {versions['triton']}, CUDA {versions['cuda']}; commit {commit}",
        f"- command: `{prov['command']}`",
        f"- copy bandwidth: {copy['gb_per_s']:.1f} GB/s ({copy['bytes'] / 2**20:.0f} MiB device-to-device copy, "
        "bytes moved = 2 x size)", "", "## Grid encoding: M points/s (achieved fraction of copy bandwidth)", "",
        "| config | backend | mode | " + " | ".join(map(_size_label, sizes)) + " |", "|---" * (3 + len(sizes)) + "|",
    ]
    lines += _rows(report["results"], ("config", "backend", "mode"), "n_points", sizes,
                   lambda r: f"{_num(r['points_per_s'] / 1e6)} ({_num(100 * r['bandwidth_fraction'])}%)")
    not_run = sorted({f"{r['backend']}: {r['reason']}" for r in report["results"] if r["status"] != "ok"})
    lines += ["", "Not run / failed: " + "; ".join(not_run)] if not_run else []
    if report.get("fused"):
        lines += ["", f"## Encoding + MLP at {_size_label(report['settings']['fused_size'])} points: M points/s "
                  "(speed-up vs PyTorch)", "", "| config | path | fwd | fwd+bwd |", "|---|---|---|---|"]
        lines += _rows(report["fused"], ("config", "path"), "mode", list(MODES),
                       lambda r: f"{_num(r['points_per_s'] / 1e6)} ({r.get('speedup_vs_pytorch', 1.0):.2f}x)")
    if report.get("second_order"):
        lines += ["", f"## Eikonal step (double backward) at {_size_label(report['settings']['fused_size'])} points",
                  "", "| config | path | M points/s (ms) |", "|---|---|---|"]
        lines += _rows(report["second_order"], ("config", "path"), "mode", ["eikonal"],
                       lambda r: f"{_num(r['points_per_s'] / 1e6)} ({_num(1e3 * r['median_s'])})")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    command = list(sys.argv) if argv is None else ["scripts/benchmark_kernels.py", *argv]
    copy = copy_bandwidth(args.device, args.copy_mib, args.repeats, args.warmup)
    print(f"[kernels] {args.device}: copy bandwidth {copy['gb_per_s']:.1f} GB/s", flush=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report: Dict = {
        "provenance": provenance(command, args.device, packages=("triton", "numpy", "tinycudann")),
        "settings": settings, "device": args.device, "copy_bandwidth": copy, "configs": {}, "results": [], "fused": [],
    }
    for name in args.configs:
        report["configs"][name], results = bench_grid(args, name, copy["gb_per_s"])
        report["results"] += results
    for name in [] if args.no_fused else args.configs:
        report["fused"] += bench_fused(args, name)
    report["second_order"] = []
    if args.second_order and args.device != "cuda":
        report["second_order_skipped"] = "--second-order runs on a GPU only (the Triton double backward)"
        print(f"[kernels] second order: skipped ({report['second_order_skipped']})", flush=True)
    for name in args.configs if args.second_order and args.device == "cuda" else []:
        if CONFIGS[name][1] == torch.float32:  # the fp16-table config would repeat hashgrid-fp32's grid
            report["second_order"] += bench_second_order(args, name)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"kernels-{args.device}-{datetime.datetime.now().strftime('%Y-%m-%d_%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report) + f"[kernels] wrote {stem}.json and {stem}.md", flush=True)
    records = report["results"] + report["fused"] + report["second_order"]
    return 1 if any(r["status"] == "failed" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
