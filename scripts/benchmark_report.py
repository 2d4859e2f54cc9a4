"""The markdown tables ``scripts/benchmark_methods.py`` appends to, one row per run with provenance: ``results.md``
(every benchmarked method) and ``distillation.md`` (students next to their teachers)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

TABLE_HEADER = (
    "| method | scene | steps | train s | PSNR | SSIM | LPIPS | peak mem | render FPS | Gaussians | storage MB "
    "| machine | commit | command |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _machine_and_commit(prov: Dict[str, object]) -> List[str]:
    gpu = prov["machine"]["gpu"]
    machine = gpu["name"] if gpu else f"{prov['machine']['cpu']} ({prov['machine']['cpu_count']} cpu)"
    commit = (prov["git_commit"] or "no-commit")[:10] + ("-dirty" if prov["git_dirty"] else "")
    return [machine, commit]


def markdown_row(record: Dict[str, object], prov: Dict[str, object]) -> str:
    machine, commit = _machine_and_commit(prov)
    mem_kind = {"cuda_max_allocated": "cuda", "process_max_rss": "rss"}.get(record.get("peak_mem_kind"), "")
    cells = [
        record["method"], record["scene"], str(record.get("steps", "—")), _fmt(record.get("train_time_s"), ".1f"),
        _fmt(record.get("psnr"), ".2f"), _fmt(record.get("ssim"), ".4f"), _fmt(record.get("lpips"), ".4f"),
        f"{_fmt(record.get('peak_mem_mb'), '.0f')} MiB {mem_kind}", _fmt(record.get("render_fps"), ".2f"),
        _fmt(record.get("num_gaussians"), "d"), _fmt(record.get("storage_mb"), ".2f"), machine, commit, f"`{prov['command']}`",
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |\n"


def append_markdown(path: Path, row: str) -> None:
    if not path.exists():
        path.write_text(TABLE_HEADER)
    with path.open("a") as table:
        table.write(row)


DISTILLATION_HEADER = (
    "| method | role | teacher | scene | PSNR | SSIM | render FPS | resolution | speed-up vs teacher | params MB "
    "| checkpoint MB | machine | commit |\n" + "|---" * 13 + "|\n"
)


def distillation_row(record: Dict[str, object], prov: Dict[str, object]) -> str:
    """One student, teacher or plain model of a distillation benchmark."""
    def fmt(key: str, spec: str) -> str:
        return _fmt(record.get(key), spec)

    cells = [str(record["method"]), str(record.get("role", "model")), str(record.get("teacher", "—")),
             str(record.get("scene", "—")), fmt("psnr", ".2f"), fmt("ssim", ".4f"), fmt("render_fps", ".2f"),
             str(record.get("render_resolution", "—")), fmt("speedup_vs_teacher", ".1f"), fmt("param_mb", ".2f"),
             fmt("checkpoint_mb", ".2f"), *_machine_and_commit(prov)]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |\n"


def write_distillation_table(path: Path, rows: List[Dict[str, object]], prov: Dict[str, object]) -> None:
    """Append one row per model to ``distillation.md`` (the README's student/teacher table)."""
    lines = "".join(distillation_row(record, prov) for record in rows if record["status"] == "ok")
    if not path.exists():
        path.write_text(DISTILLATION_HEADER)
    with path.open("a") as table:
        table.write(lines)
    print(DISTILLATION_HEADER + lines, end="", flush=True)
