"""Runs pytest in a child process with a timeout and reads every test's outcome, for ``scripts/gpu_check.py``.

Outcomes come from pytest's JUnit XML (with the failures' short tracebacks); when pytest is killed by the timeout
there is no XML, and the ``-v`` log lines of the tests that finished are read instead. Needs only the standard
library (pytest itself runs in the child; pytest-xdist is used when asked for and installed).
"""

from __future__ import annotations

import collections
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Optional

from gpu_check_context import REPO_ROOT

OUTCOMES = ("passed", "failed", "error", "skipped")
PER_TEST_TIMEOUT_S = 60
COMPILED_KERNEL_MARKERS = ("triton", "fused", "fma", "nonfinite")
"""Test files whose tests run the compiled Triton kernels on a GPU (a mismatch there matters most)."""
_PLAIN_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
_XDIST_LINE = re.compile(r"^\[gw\d+\] \[\s*\d+%\] (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+::\S+)")
PYTEST_MISSING = ("pytest is not installed for {python}: the correctness stage cannot run the tests. Carry its "
                  "wheels (pytest, pluggy, iniconfig) in .gpu/pytest-wheels; scripts/gpu_check_on_device.sh "
                  "installs them")


def pytest_command(tests: List[str], junit: Path, workers: int) -> List[str]:
    command = [sys.executable, "-m", "pytest", "-v", "-rfE", "--tb=short", "-p", "no:cacheprovider",
               f"--junitxml={junit}", "-o", "junit_family=xunit1", *tests]
    if workers > 0 and importlib.util.find_spec("xdist") is not None:
        command[3:3] = ["-n", str(workers)]
    if importlib.util.find_spec("pytest_timeout") is not None:  # one hung test fails alone, not the whole run
        command[3:3] = [f"--timeout={PER_TEST_TIMEOUT_S}"]
    return command


def _outcome(case: ElementTree.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return "failed" if tag == "failure" else tag
    return "passed"


def read_junit(path: Path) -> List[Dict[str, str]]:
    """``[{id, file, outcome, message, traceback}]`` from a JUnit XML file."""
    cases = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome = _outcome(case)
        detail = case.find({"failed": "failure"}.get(outcome, outcome)) if outcome != "passed" else None
        file = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
        cases.append({"id": f"{file}::{case.get('name')}", "file": file, "outcome": outcome,
                      "message": (detail.get("message", "") if detail is not None else "")[:500],
                      "traceback": (detail.text or "")[-1500:] if detail is not None else ""})
    return cases


def read_verbose_log(path: Path) -> List[Dict[str, str]]:
    """Outcomes of the tests that finished, from pytest's ``-v`` lines (used after a timeout)."""
    cases = []
    for line in path.read_text(errors="replace").splitlines():
        plain, xdist = _PLAIN_LINE.match(line), _XDIST_LINE.match(line)
        test_id, word = (plain.group(1), plain.group(2)) if plain else (xdist.group(2), xdist.group(1)) if xdist \
            else (None, None)
        if test_id:
            outcome = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "error"}.get(word, "skipped")
            cases.append({"id": test_id, "file": test_id.split("::")[0], "outcome": outcome,
                          "message": "see the pytest log" if outcome in ("failed", "error") else "", "traceback": ""})
    return cases


def summarize(cases: List[Dict[str, str]]) -> Dict[str, object]:
    """Counts overall and per file, and the failures (flagged when a compiled kernel's test failed)."""
    per_file: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case in cases:
        per_file[case["file"]][case["outcome"]] += 1
    failures = [{**case, "compiled_kernel": any(m in case["file"] for m in COMPILED_KERNEL_MARKERS)}
                for case in cases if case["outcome"] in ("failed", "error")]
    counts = collections.Counter(case["outcome"] for case in cases)
    skip_reasons = collections.Counter(case["message"] for case in cases if case["outcome"] == "skipped")
    return {"counts": {k: counts.get(k, 0) for k in OUTCOMES}, "tests": len(cases),
            "skip_reasons": dict(skip_reasons.most_common(10)),
            "per_file": {f: {k: c.get(k, 0) for k in OUTCOMES} for f, c in sorted(per_file.items())},
            "failures": failures[:40], "failures_left_out": max(len(failures) - 40, 0),
            "compiled_kernel_failures": sum(f["compiled_kernel"] for f in failures)}


def _run(command: List[str], log: Path, timeout_s: float, env: Optional[Dict[str, str]]) -> Optional[int]:
    """The exit code, or None when the run was killed at ``timeout_s`` (its whole process group)."""
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)

        def stop(*_) -> None:  # the stage itself is being stopped (its timeout): take pytest and its workers along
            os.killpg(process.pid, signal.SIGKILL)
            sys.exit(143)

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None
        finally:
            signal.signal(signal.SIGTERM, previous)


def run_pytest(tests: List[str], log: Path, junit: Path, timeout_s: float, workers: int = 0,
               env: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """Runs ``pytest tests`` (killed after ``timeout_s``) and summarizes the outcomes; ``error`` says what went
    wrong beyond failing tests (pytest missing, a timeout, a crash, nothing collected)."""
    if importlib.util.find_spec("pytest") is None:
        return {"error": PYTEST_MISSING.format(python=sys.executable), "counts": {}, "tests": 0}
    log.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    command = pytest_command(tests, junit, workers)
    start = time.monotonic()
    code = _run(command, log, timeout_s, env)
    from_junit = junit.is_file()
    summary = summarize(read_junit(junit) if from_junit else read_verbose_log(log))
    summary.update(command=" ".join(command[1:]), returncode=code, timed_out=code is None,
                   seconds=time.monotonic() - start, source="junit" if from_junit else "verbose log", log=str(log))
    summary["error"] = None
    if code is None:
        summary["error"] = (f"pytest timed out after {timeout_s:.0f} s and was killed; {summary['tests']} tests had "
                            "finished (counts below), the others did not run")
    elif code not in (0, 1) or summary["tests"] == 0:
        summary["error"] = f"pytest exited with code {code} after {summary['tests']} tests; see {log.name}"
    return summary
