"""Reproduce NGPC's breakdown: the share of an application's training iteration spent in grid encoding and MLPs.

Mubarik et al., "Hardware Acceleration of Neural Graphics" (ISCA 2023) report that input encoding + MLP take 72.37% /
60.0% / 59.96% of application time with a multi-resolution hashgrid / multi-resolution densegrid / low-resolution
densegrid, averaged over four applications. This script runs the four (``scripts/ngpc_apps.py``: NeRF, neural SDF,
gigapixel image, neural volume) with each encoding and splits every training iteration into encoding, MLP
(``fused`` for the fused encoding+MLP kernel) and everything else.

Method (staged backward): each encoding / MLP call goes through ``StagedProfiler.run``, which times its forward
(CUDA events on a GPU, ``time.perf_counter`` on CPU, where ops are synchronous) and detaches its output into a fresh
leaf (non-leaf inputs are detached too, as "other" stages). The backward is then run stage by stage: ``loss.backward()``
(the "other" ops after the last stage) fills the leaves' ``.grad``, then each stage's ``output.backward(leaf.grad)`` in
reverse creation order (a topological order: every consumer of a leaf was created after it), timed into that
stage's part. By the chain rule the gradients are exactly those of one ``loss.backward()``; the cost is a few more
autograd-engine calls and no overlap across the cuts (there is none on one CUDA stream anyway). "Other" = iteration
time (first forward op to the end of the Adam step) - encoding - MLP - fused; ``other_detail_ms`` breaks part of it
down (data, marching, compositing, optimizer; forward-only timings, for information).

    python scripts/profile_ngpc.py --backend torch        # the PyTorch reference
    python scripts/profile_ngpc.py --backend triton       # then the fast kernels: compare the splits
    python scripts/profile_ngpc.py --device cpu --tiny --iterations 2 --apps sdf image

Writes ``<output-dir>/ngpc-profile-<backend>-<device>-<stamp>.{json,md,png}`` (provenance included).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import statistics
import sys
import traceback
from pathlib import Path
from typing import Dict, List, Optional

if str(Path(__file__).resolve().parent) not in sys.path:  # imported from tests, or run from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from benchmark_kernels import (  # noqa: E402
    elapsed_s, resolve_device, short_error, synchronize, timestamp,
)
from provenance import provenance  # noqa: E402
import ngpc_apps  # noqa: E402

PARTS = ("encoding", "mlp", "fused", "other")
PAPER = {"hashgrid": 72.37, "multires-dense": 60.0, "lowres-dense": 59.96}  # % encoding + MLP, NGPC (ISCA 2023)
COLORS = {"encoding": "#1f77b4", "mlp": "#ff7f0e", "fused": "#9467bd", "other": "#c7c7c7"}


class StagedProfiler:
    """Times forward and backward of each part of one training iteration (see the module docstring)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.intervals: Dict[str, list] = {}
        self.stages: list = []
        self._begin = None

    def _mark(self):
        return timestamp(self.device)

    def _add(self, part: str, start, end) -> None:
        self.intervals.setdefault(part, []).append((start, end))

    def _cut(self, tensor, part: str):
        if not (isinstance(tensor, torch.Tensor) and torch.is_grad_enabled() and tensor.grad_fn is not None):
            return tensor
        leaf = tensor.detach().requires_grad_()
        self.stages.append((part, tensor, leaf))
        return leaf

    def run(self, part: str, fn, *inputs):
        """``fn(*inputs)`` timed as ``part``; its inputs and output are cut from the graph (see ``backward``)."""
        inputs = [self._cut(x, "other") for x in inputs]
        start = self._mark()
        output = fn(*inputs)
        self._add(part, start, self._mark())
        return self._cut(output, part)

    @contextlib.contextmanager
    def region(self, name: str):
        """An informational sub-timing of "other" (forward only)."""
        start = self._mark()
        yield
        self._add("detail:" + name, start, self._mark())

    def backward(self, loss: torch.Tensor) -> None:
        start = self._mark()
        loss.backward()
        self._add("detail:backward-of-other", start, self._mark())
        for part, output, leaf in reversed(self.stages):
            if leaf.grad is not None:
                start = self._mark()
                output.backward(leaf.grad)
                self._add(part, start, self._mark())
        self.stages = []

    def begin(self) -> None:
        self.intervals, self.stages = {}, []
        synchronize(self.device)
        self._begin = self._mark()

    def end(self) -> Dict[str, float]:
        """Milliseconds per part for the iteration since ``begin`` (synchronizes)."""
        finish = self._mark()
        synchronize(self.device)
        times = {key: 1e3 * sum(elapsed_s(a, b) for a, b in spans) for key, spans in self.intervals.items()}
        split = {part: times.get(part, 0.0) for part in PARTS[:3]}
        split["total"] = 1e3 * elapsed_s(self._begin, finish)
        split["other"] = split["total"] - sum(split[p] for p in PARTS[:3])
        split["detail"] = {k.split(":", 1)[1]: v for k, v in times.items() if k.startswith("detail:")}
        return split


def train_step(app, prof: StagedProfiler) -> torch.Tensor:
    """One training iteration: forward, staged backward, Adam step. Returns the detached loss (read it after timing)."""
    loss = app.loss(prof)
    prof.backward(loss)
    with prof.region("optimizer"):
        app.optimizer.step()
        app.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def profile_one(app_name: str, encoding: str, args) -> Dict[str, object]:
    record: Dict[str, object] = {"app": app_name, "encoding": encoding, "backend": args.backend}
    try:
        app = ngpc_apps.make_app(app_name, encoding, args)
    except ngpc_apps.Unavailable as error:
        return {**record, "status": "unavailable", "reason": str(error)}
    except Exception as error:  # missing data, a bad mesh...
        traceback.print_exc()
        return {**record, "status": "failed", "reason": short_error(error)}
    record.update(field_mode=app.mode, spec=dataclasses.asdict(app.spec), table_rows=app.spec.n_params)
    prof = StagedProfiler(args.device)
    splits, losses = [], []
    try:
        for iteration in range(args.warmup + args.iterations):
            prof.begin()
            loss = train_step(app, prof)
            split = prof.end()
            losses.append(float(loss))
            if iteration >= args.warmup:
                splits.append(split)
    except Exception as error:  # a kernel that fails on this config: keep going with the others
        traceback.print_exc()
        return {**record, "status": "failed", "reason": short_error(error)}
    finally:
        if args.device == "cuda":
            torch.cuda.empty_cache()
    total = sum(s["total"] for s in splits)
    mean = {p: sum(s[p] for s in splits) / len(splits) for p in (*PARTS, "total")}
    detail_keys = sorted({k for s in splits for k in s["detail"]})
    fractions = {p: sum(s[p] for s in splits) / total for p in PARTS}
    return {
        **record, "status": "ok", "iterations": len(splits), "warmup": args.warmup, "info": app.info,
        "time_ms": mean, "median_total_ms": statistics.median(s["total"] for s in splits),
        "fractions": fractions, "encoding_plus_mlp_fraction": fractions["encoding"] + fractions["mlp"]
        + fractions["fused"], "other_detail_ms": {k: sum(s["detail"].get(k, 0.0) for s in splits) / len(splits)
                                                  for k in detail_keys},
        "loss_first_last": [losses[0], losses[-1]], "per_iteration_ms": splits,
    }


def summarize(results: List[Dict]) -> Dict[str, Dict]:
    summary = {}
    for encoding, paper in PAPER.items():
        ok = [r["encoding_plus_mlp_fraction"] for r in results if r["encoding"] == encoding and r["status"] == "ok"]
        summary[encoding] = {"paper_percent": paper, "apps": len(ok),
                             "measured_percent": 100 * sum(ok) / len(ok) if ok else None}
    return summary


def markdown(report: Dict) -> str:
    prov = report["provenance"]
    commit = (prov["git_commit"] or "no-commit")[:10] + ("-dirty" if prov["git_dirty"] else "")
    gpu = prov["machine"]["gpu"]["name"] if prov["machine"]["gpu"] else prov["machine"]["cpu"]
    lines = [f"# NGPC breakdown, backend {report['settings']['backend']} on {report['device']} ({gpu})", "",
             f"- {prov['date']}; torch {prov['versions']['torch']}, triton {prov['versions']['triton']}; {commit}",
             f"- command: `{prov['command']}`", "",
             "| app | encoding | ms/iter | encoding % | MLP % | fused % | other % | enc+MLP % | paper % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        if r["status"] != "ok":
            lines.append(f"| {r['app']} | {r['encoding']} | {r['status']}: {r['reason']} |||||||")
            continue
        f = r["fractions"]
        lines.append(f"| {r['app']} | {r['encoding']} | {r['time_ms']['total']:.2f} | {100 * f['encoding']:.1f} | "
                     f"{100 * f['mlp']:.1f} | {100 * f['fused']:.1f} | {100 * f['other']:.1f} | "
                     f"{100 * r['encoding_plus_mlp_fraction']:.1f} | {PAPER[r['encoding']]} |")
    for encoding, s in report["summary"].items():
        measured = "—" if s["measured_percent"] is None else f"{s['measured_percent']:.1f}"
        lines.append(f"| **mean of {s['apps']}** | {encoding} | | | | | | **{measured}** | **{s['paper_percent']}** |")
    return "\n".join(lines) + "\n"


def plot(report: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    encodings = list(PAPER)
    fig, axes = plt.subplots(1, len(encodings), figsize=(5 * len(encodings), 4.5), sharey=True)
    for ax, encoding in zip(axes, encodings):
        rows = [r for r in report["results"] if r["encoding"] == encoding and r["status"] == "ok"]
        labels = [r["app"] for r in rows] + ["mean"]
        fractions = [r["fractions"] for r in rows]
        if rows:
            fractions.append({p: sum(f[p] for f in fractions) / len(fractions) for p in PARTS})
        else:
            fractions.append({p: 0.0 for p in PARTS})
        bottom = [0.0] * len(fractions)
        for part in PARTS:
            values = [100 * f[part] for f in fractions]
            ax.bar(labels, values, bottom=bottom, color=COLORS[part], label=part)
            bottom = [b + v for b, v in zip(bottom, values)]
        paper = PAPER[encoding]
        ax.bar(["paper"], [paper], color="#2ca02c", hatch="//", label="encoding+MLP (NGPC paper)")
        ax.bar(["paper"], [100 - paper], bottom=[paper], color=COLORS["other"])
        ax.text(len(labels), paper / 2, f"{paper}%", ha="center", va="center", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
        measured = report["summary"][encoding]["measured_percent"]
        ax.set_title(f"{encoding}: enc+MLP {'—' if measured is None else f'{measured:.1f}'}% (paper {paper}%)")
        ax.set_ylim(0, 100)
        ax.tick_params(axis="x", rotation=30)
    axes[0].set_ylabel("% of training-iteration time")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=5, frameon=False)
    fig.suptitle(f"NGPC breakdown, backend={report['settings']['backend']}, device={report['device']}")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="auto", choices=["torch", "triton", "fused", "auto"],
                        help="grid fields: PyTorch reference, Triton encoding (+ PyTorch MLP), fused encoding+MLP, "
                             "or auto (Triton on CUDA when available)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--apps", nargs="+", choices=ngpc_apps.APPS, default=list(ngpc_apps.APPS))
    parser.add_argument("--encodings", nargs="+", choices=ngpc_apps.ENCODINGS, default=list(ngpc_apps.ENCODINGS))
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations; default 20 GPU, 3 CPU")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations first; default 5 GPU, 1 CPU")
    parser.add_argument("--rays", type=int, default=None, help="NeRF / volume rays per iteration (4096 GPU, 128 CPU)")
    parser.add_argument("--points", type=int, default=None, help="SDF / image points per step (2^18 GPU, 4096 CPU)")
    parser.add_argument("--volume-samples", type=int, default=None, help="samples per volume ray (128 GPU, 32 CPU)")
    parser.add_argument("--blender-data", type=Path, default=ngpc_apps.REPO_ROOT / "tests" / "data" / "lego-100")
    parser.add_argument("--nerf-images", type=int, default=8, help="posed training images whose rays are sampled")
    parser.add_argument("--render-backend", default="auto", choices=["auto", "torch"],
                        help="marching / compositing (part of 'other', same in every --backend run): auto = the "
                             "fastest available on CUDA (Triton compositing, nerfacc marching), torch = reference")
    parser.add_argument("--image", type=Path, default=None, help="image to fit (default: largest shared fox JPG)")
    parser.add_argument("--sdf-mesh", type=Path, default=None, help="OBJ mesh for the SDF (default: analytic shape)")
    parser.add_argument("--tiny", action="store_true", help="tiny grids (CPU smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks"))
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    gpu = args.device == "cuda"
    args.iterations = args.iterations or (20 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    args.rays = args.rays or (4096 if gpu else 128)
    args.points = args.points or (2**18 if gpu else 2**12)
    args.volume_samples = args.volume_samples or (128 if gpu else 32)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    command = list(sys.argv) if argv is None else ["scripts/profile_ngpc.py", *argv]
    report: Dict[str, object] = {
        "provenance": provenance(command, args.device, packages=("triton", "numpy", "tinycudann")),
        "device": args.device,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "method": "staged backward: forward and backward of every encoding/MLP call timed separately (CUDA events "
                  "on GPU, perf_counter on CPU); other = iteration - encoding - mlp - fused",
        "paper": {"source": "Mubarik et al., Hardware Acceleration of Neural Graphics, ISCA 2023",
                  "encoding_plus_mlp_percent": PAPER},
        "results": [],
    }
    for app_name in args.apps:
        for encoding in args.encodings:
            torch.manual_seed(args.seed)
            record = profile_one(app_name, encoding, args)
            report["results"].append(record)
            if record["status"] == "ok":
                print(f"[ngpc] {app_name:<7} {encoding:<15} {record['time_ms']['total']:9.2f} ms/iter  "
                      f"enc+MLP {100 * record['encoding_plus_mlp_fraction']:5.1f}%", flush=True)
            else:
                print(f"[ngpc] {app_name:<7} {encoding:<15} {record['status']}: {record['reason']}", flush=True)
    report["summary"] = summarize(report["results"])
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    stem = args.output_dir / f"ngpc-profile-{args.backend}-{args.device}-{stamp}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    stem.with_suffix(".md").write_text(table)
    plot(report, stem.with_suffix(".png"))
    print(table + f"[ngpc] wrote {stem}.json, .md and .png", flush=True)
    return 1 if any(r["status"] == "failed" for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
