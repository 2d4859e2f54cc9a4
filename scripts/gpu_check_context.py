"""What one stage of ``scripts/gpu_check.py`` works with and records: settings, figures, tables, targets, failures.

A stage runs in its own child process; its ``StageContext`` is read from a JSON file the parent wrote, and the
stage's result is written back to ``ctx.result_path`` after each step (``save``), so a stage killed by its timeout
still leaves what it had measured. Needs only the standard library.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class StageContext:
    """Settings of one stage run plus what it has found so far."""

    name: str
    device: str
    tiny: bool
    output_dir: Path
    data_root: Path
    timeout_s: float
    result_path: Path
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    figures: Dict[str, Any] = dataclasses.field(default_factory=dict)
    tables: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    targets: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    failures: List[str] = dataclasses.field(default_factory=list)
    skipped: Optional[str] = None
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def gpu(self) -> bool:
        return self.device == "cuda"

    @property
    def scratch_dir(self) -> Path:
        """Where bulky outputs go (training runs, checkpoints, scene subsets): kept out of the report's folder."""
        return Path(self.options.get("scratch_dir") or self.output_dir / "scratch")

    def seconds_left(self) -> float:
        """Seconds until the parent kills this stage."""
        return self.timeout_s - (time.monotonic() - self.started)

    def settings(self) -> Dict[str, Any]:
        """The JSON the parent writes for the child (everything but the findings)."""
        fields = ("name", "device", "tiny", "output_dir", "data_root", "timeout_s", "result_path", "options")
        return {key: str(value) if isinstance(value, Path) else value
                for key, value in ((key, getattr(self, key)) for key in fields)}

    @classmethod
    def load(cls, path: Path) -> "StageContext":
        data = json.loads(Path(path).read_text())
        for key in ("output_dir", "data_root", "result_path"):
            data[key] = Path(data[key])
        return cls(**data)

    def table(self, title: str, columns: List[str], rows: List[List[Any]]) -> None:
        """A table for the markdown report (cells are written as they are)."""
        self.tables.append({"title": title, "columns": columns, "rows": rows})

    def target(self, name: str, measured: Optional[float], required: float, unit: str, note: str = "") -> None:
        """Records ``measured >= required`` as met / not met on a GPU; never counts a target as a result."""
        if measured is None or (isinstance(measured, float) and not math.isfinite(measured)):
            verdict = "not measured"
        elif not self.gpu:
            verdict = "n/a on cpu"
        else:
            verdict = "met" if measured >= required else "not met"
        self.targets.append({"stage": self.name, "name": name, "required": f">= {required:g} {unit}".strip(),
                             "measured": measured, "unit": unit, "verdict": verdict, "note": note})

    def condition(self, name: str, holds: Optional[bool], measured: str, required: str, note: str = "") -> None:
        """A yes/no target (e.g. "runs through gsplat"): met / not met on a GPU, ``n/a on cpu`` otherwise."""
        verdict = "not measured" if holds is None else ("met" if holds else "not met") if self.gpu else "n/a on cpu"
        self.targets.append({"stage": self.name, "name": name, "required": required, "measured": measured,
                             "unit": "", "verdict": verdict, "note": note})

    def save(self, status: str = "running", error: Optional[str] = None) -> None:
        """Writes the result so far (atomically: the parent may read it after killing this process)."""
        result = {"name": self.name, "status": status, "seconds": time.monotonic() - self.started,
                  "figures": self.figures, "tables": self.tables, "targets": self.targets,
                  "failures": self.failures, "error": error, "skip_reason": self.skipped}
        partial = self.result_path.with_suffix(".tmp")
        partial.write_text(json.dumps(result, indent=1, default=str))
        partial.replace(self.result_path)


def newest(directory: Path, pattern: str) -> Path:
    """The most recently written file matching ``pattern`` (the scripts stamp their outputs with the time)."""
    matches = sorted(Path(directory).glob(pattern), key=lambda path: path.stat().st_mtime)
    if not matches:
        raise FileNotFoundError(f"no {pattern} in {directory}")
    return matches[-1]


def fmt(value: Optional[float], spec: str = ".3g", scale: float = 1.0) -> str:
    """A table cell: ``—`` for a missing value."""
    return "—" if value is None else format(value * scale, spec)
