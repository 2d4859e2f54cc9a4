"""The markdown report of ``scripts/gpu_check.py``: provenance, stage table, targets, each stage's tables, errors."""

from __future__ import annotations

from typing import Dict, List

from gpu_check_context import fmt


def _cell(value) -> str:
    if isinstance(value, float):
        return fmt(value, ".4g")
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(columns: List[str], rows: List[List]) -> List[str]:
    return (["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
            + ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows])


def header(report: Dict) -> List[str]:
    """Title and provenance lines: date, machine, command, commit, versions."""
    prov, summary = report["provenance"], report["summary"]
    machine = prov["machine"]
    where = machine["gpu"]["name"] if machine["gpu"] else f"{machine['cpu']} ({machine['cpu_count']} cpu)"
    commit = (prov["git_commit"] or "no-commit")[:10] + ("-dirty" if prov["git_dirty"] else "")
    versions = ", ".join(f"{name} {version}" for name, version in prov["versions"].items() if version)
    mode = "tiny sizes, CPU paths" if report["tiny"] else "full sizes"
    return [f"# GPU check on {where} ({report['device']}, {mode})", "",
            f"- date: {prov['date']}; commit {commit}; platform {machine['platform']}",
            f"- command: `{prov['command']}`", f"- versions: {versions}",
            f"- stages: {summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} skipped; "
            f"{summary['seconds']:.0f} s in all", ""]


def stage_rows(report: Dict) -> List[List]:
    rows = []
    for stage in report["stages"]:
        problem = stage.get("skip_reason") or (stage.get("error") or "").strip().splitlines()[:1]
        problem = problem[0] if isinstance(problem, list) and problem else problem or ""
        rows.append([stage["name"], stage["status"], f"{stage['seconds']:.1f}",
                     f"{stage.get('timeout_s', 0):.0f}", problem[:160]])
    return rows


def target_rows(report: Dict) -> List[List]:
    rows = []
    for target in report["targets"]:
        measured = target["measured"]
        shown = fmt(measured, ".4g") if isinstance(measured, (int, float)) or measured is None else measured
        rows.append([target["stage"], target["name"], target["required"], f"{shown} {target['unit']}".strip(),
                     f"**{target['verdict']}**", target.get("note", "")])
    return rows


def markdown(report: Dict) -> str:
    """The whole report as markdown."""
    lines = header(report)
    lines += ["## Stages", ""] + _table(["stage", "status", "seconds", "timeout s", "problem"], stage_rows(report))
    lines += ["", "## Targets (measured next to the target; verdicts only from a GPU run)", ""]
    lines += _table(["stage", "target", "required", "measured", "verdict", "note"], target_rows(report))
    for stage in report["stages"]:
        for table in stage.get("tables", []):
            lines += ["", f"## {stage['name']}: {table['title']}", ""] + _table(table["columns"], table["rows"])
    failed = [stage for stage in report["stages"] if stage["status"] == "failed"]
    if failed:
        lines += ["", "## Errors"]
    for stage in failed:
        lines += ["", f"### {stage['name']} (log: {stage.get('log', '?')})", "", "```text",
                  (stage.get("error") or "")[:4000], "```"]
    return "\n".join(lines) + "\n"


def console_summary(report: Dict) -> str:
    """The short part for a terminal (or a device call's output tail): stages and targets."""
    lines = header(report) + ["## Stages", ""] + _table(["stage", "status", "seconds", "timeout s", "problem"],
                                                        stage_rows(report))
    lines += ["", "## Targets", ""] + _table(["stage", "target", "required", "measured", "verdict", "note"],
                                             target_rows(report))
    return "\n".join(lines)
