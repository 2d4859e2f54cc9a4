"""The markdown table ``scripts/benchmark_methods.py`` appends to: one row per method run, with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

TABLE_HEADER = (
    "| method | scene | steps | train s | PSNR | SSIM | LPIPS | peak mem | render FPS | Gaussians | storage MB "
    "| machine | commit | command |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown_row(record: Dict[str, object], prov: Dict[str, object]) -> str:
    gpu = prov["machine"]["gpu"]
    machine = gpu["name"] if gpu else f"{prov['machine']['cpu']} ({prov['machine']['cpu_count']} cpu)"
    commit = (prov["git_commit"] or "no-commit")[:10] + ("-dirty" if prov["git_dirty"] else "")
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
