"""Benchmark the Gaussian rasteriser dispatch: render time, forward+backward time and peak memory.

For every backend (``torch`` reference, ``gsplat`` on CUDA), number of Gaussians and square resolution, renders
random Gaussians the way the splat methods initialise them (uniform in a cube of half-side 1.3, isotropic scales
from the mean distance to the 3 nearest neighbours, opacity 0.1, RGB colours) from a camera 4 units away with a
D-NeRF-like focal length (1.1 x width). Each configuration runs in a fresh child process so its peak memory
(resident set on CPU, ``torch.cuda.max_memory_allocated`` on GPU) is its own. ``render_fps`` counts forward
passes only (``no_grad``, after a warm-up on GPU). Needs torch (and gsplat for its backend), never nerfstudio.
Writes ``<output-dir>/splat-<device>-<stamp>.json`` (with provenance) and ``.md``.

    python scripts/benchmark_splat.py --device cpu --gaussians 20000 100000 --sizes 200 800 --repeats 1
    python scripts/benchmark_splat.py --device cuda --gaussians 100000 1000000 --sizes 800 --repeats 50
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "scripts"):  # run from a checkout without `pip install -e .`
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def measure_one(backend: str, device: str, num_gaussians: int, size: int, repeats: int) -> Dict[str, float]:
    """Time one configuration in this process; returns seconds and peak memory in GiB."""
    import torch

    from benchmark_kernels import ensure_jaxtyping

    ensure_jaxtyping()
    from ng_methods.kernels.splat import rasterize
    from ng_methods.splat.knn import nearest_neighbours

    gen = torch.Generator().manual_seed(0)
    means = (torch.rand(num_gaussians, 3, generator=gen) * 2 - 1) * 1.3
    sq_dists, _ = nearest_neighbours(means.to(device), 3, exclude_self=True)
    scales = sq_dists.sqrt().mean(1, keepdim=True).repeat(1, 3).cpu()
    params = [t.to(device) for t in (means, torch.randn(num_gaussians, 4, generator=gen), scales,
                                     torch.full((num_gaussians,), 0.1), torch.rand(num_gaussians, 3, generator=gen))]
    viewmat = torch.eye(4, device=device)[None].clone()
    viewmat[0, 2, 3] = 4.0
    focal = 1.1 * size
    Ks = torch.tensor([[[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]]], device=device)

    def render(tensors):
        return rasterize(*tensors, viewmat, Ks, size, size, backend=backend)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        if device == "cuda":
            render(params)
        forward_s = []
        for _ in range(repeats):
            _synchronize(device)
            start = time.perf_counter()
            render(params)
            _synchronize(device)
            forward_s.append(time.perf_counter() - start)
    train_s = []
    for _ in range(repeats):
        leaves = [t.clone().requires_grad_(True) for t in params]
        _synchronize(device)
        start = time.perf_counter()
        colors, _, _ = render(leaves)
        colors.sum().backward()
        _synchronize(device)
        train_s.append(time.perf_counter() - start)
    if device == "cuda":
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    forward = statistics.median(forward_s)
    return {"forward_s": forward, "render_fps": 1.0 / forward, "forward_backward_s": statistics.median(train_s),
            "peak_memory_gib": peak_gib}


def run_child(backend: str, device: str, num_gaussians: int, size: int, repeats: int) -> Dict[str, object]:
    command = [sys.executable, __file__, "--child", backend, device, str(num_gaussians), str(size), str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True)
    row: Dict[str, object] = {"backend": backend, "gaussians": num_gaussians, "size": size}
    if result.returncode != 0:
        row["error"] = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
    else:
        row.update(json.loads(result.stdout.strip().splitlines()[-1]))
    return row


def markdown(rows: List[Dict[str, object]], record: Dict[str, object]) -> str:
    prov = record["provenance"]
    machine = prov["machine"]
    where = machine["gpu"]["name"] if machine["gpu"] else f"{machine['cpu']} ({machine['cpu_count']} cores)"
    lines = [f"# Splat rasteriser benchmark ({record['device']})", "",
             f"`{prov['command']}` at commit {prov['git_commit']}{' (dirty)' if prov['git_dirty'] else ''}, "
             f"{prov['date']}, {where}, torch {prov['versions']['torch']}, gsplat {prov['versions']['gsplat']}", "",
             "| backend | Gaussians | size | render ms | render FPS | fwd+bwd s | peak GiB |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['backend']} | {row['gaussians']} | {row['size']} | {row['error']} | | | |")
            continue
        lines.append(f"| {row['backend']} | {row['gaussians']} | {row['size']} | {1000 * row['forward_s']:.1f} | "
                     f"{row['render_fps']:.1f} | {row['forward_backward_s']:.3f} | {row['peak_memory_gib']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Runs every configuration; returns 1 if any failed, else 0."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        backend, device, num_gaussians, size, repeats = argv[1:6]
        print(json.dumps(measure_one(backend, device, int(num_gaussians), int(size), int(repeats))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--backends", nargs="+", default=None, help="default: torch, plus gsplat on cuda")
    parser.add_argument("--gaussians", nargs="+", type=int, default=[100_000])
    parser.add_argument("--sizes", nargs="+", type=int, default=[800])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks"))
    args = parser.parse_args(argv)
    from provenance import provenance

    backends = args.backends or (["torch", "gsplat"] if args.device == "cuda" else ["torch"])
    rows = []
    for backend in backends:
        for num_gaussians in args.gaussians:
            for size in args.sizes:
                rows.append(run_child(backend, args.device, num_gaussians, size, args.repeats))
                print(json.dumps(rows[-1]), flush=True)
    record = {"device": args.device, "rows": rows,
              "provenance": provenance([Path(__file__).name, *argv], args.device, ("gsplat",))}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"splat-{args.device}-{datetime.datetime.now():%Y-%m-%d_%H%M%S}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
    stem.with_suffix(".md").write_text(markdown(rows, record))
    print(f"wrote {stem}.json and .md")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
