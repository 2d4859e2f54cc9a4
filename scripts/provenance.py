"""What produced a benchmark figure: date, exact command, git commit (+ dirty flag), machine and library versions.

Shared by every script under ``scripts/`` so all published numbers carry the same provenance record. Needs only the
standard library and torch.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shlex
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def git(*git_args: str) -> Optional[str]:
    """Output of a git command in the repository; None without git, outside a checkout or before the first commit."""
    with contextlib.suppress(OSError):
        result = subprocess.run(["git", *git_args], cwd=REPO_ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None
    return None


def cpu_model() -> str:
    with contextlib.suppress(OSError, StopIteration):
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    return platform.processor() or platform.machine()


def package_version(package: str) -> Optional[str]:
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(package)
    return None


def gpu_description(device: str) -> Optional[Dict[str, object]]:
    if device != "cuda":
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count}


def provenance(command: List[str], device: str, packages: Sequence[str] = ()) -> Dict[str, object]:
    """Date, exact command, git commit (+ dirty flag), machine (CPU, GPU) and versions of torch and ``packages``."""
    status = git("status", "--porcelain")
    versions = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    versions.update({package: package_version(package) for package in packages})
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(command),
        "argv": command,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "device": device, "gpu": gpu_description(device)},
        "versions": versions,
    }
