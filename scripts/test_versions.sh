#!/usr/bin/env bash
# Run the kernel tests on each supported torch/triton pair, each in a fresh virtual environment.
#
# Usage: bash scripts/test_versions.sh [--output FILE] [PAIR ...]      PAIR = TORCH:TRITON, e.g. 2.11.0:3.6.0
# Default pairs: the oldest supported (the GPU image's torch 2.11 + triton 3.6), a pip-capped machine's
# (2.14.1 + 3.8.0) and the newest (2.15.0 + 3.9.0): the range pyproject.toml declares.
# Venvs live under $NG_VERSIONS_VENVS (default /tmp/ng-versions; about 8 GB each, kept for reruns).
# Prints one markdown table row per pair (pair, passed, failed, skipped, seconds) with date and commit, and writes
# the table to --output (default benchmarks/versions-<date>.md). Exits non-zero if any pair failed.
# The pair is pinned with a constraints file of its own; a machine-wide pip constraint (PIP_CONSTRAINT, pip.conf)
# is lifted for these installs only, since it may forbid the very version under test.
set -uo pipefail
cd "$(dirname "$0")/.."

output="benchmarks/versions-$(date -u +%Y-%m-%d).md"
pairs=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --output) output="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) pairs+=("$1"); shift ;;
    esac
done
[[ ${#pairs[@]} -gt 0 ]] || pairs=("2.11.0:3.6.0" "2.14.1:3.8.0" "2.15.0:3.9.0")

venvs="${NG_VERSIONS_VENVS:-/tmp/ng-versions}"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain 2>/dev/null | grep -q . && echo ' (+ uncommitted changes)')"
rows=()
status=0

for pair in "${pairs[@]}"; do
    torch_version="${pair%%:*}"
    triton_version="${pair##*:}"
    venv="$venvs/torch${torch_version}-triton${triton_version}"
    log="$venv.log"
    mkdir -p "$venvs"
    constraints="$venvs/constraints-${torch_version}-${triton_version}.txt"
    printf 'torch==%s\ntriton==%s\n' "$torch_version" "$triton_version" > "$constraints"
    echo "== torch $torch_version / triton $triton_version: $venv (log: $log)" >&2
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "$venv" || { status=1; continue; }
    fi
    if ! PIP_CONSTRAINT="$constraints" "$venv/bin/python" -m pip install -q \
            --disable-pip-version-check -e ".[test]" > "$log" 2>&1; then
        echo "install failed, see $log" >&2
        rows+=("| torch $torch_version / triton $triton_version | install failed | | | |")
        status=1
        continue
    fi
    start=$SECONDS
    "$venv/bin/python" -m pytest tests/kernels -q -p no:cacheprovider >> "$log" 2>&1
    code=$?
    seconds=$((SECONDS - start))
    summary="$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed).* =+$' "$log" | tail -1 | tr -d '=')"
    count() { grep -oE "[0-9]+ $1" <<< "$summary" | grep -oE '[0-9]+' || echo 0; }
    installed="$("$venv/bin/python" -c 'import torch, triton; print(torch.__version__, triton.__version__)')"
    rows+=("| torch $torch_version / triton $triton_version ($installed) | $(count passed) | $(count failed) | $(count skipped) | $seconds |")
    [[ $code -eq 0 ]] || status=1
done

{
    echo "# Kernel tests across torch/triton pairs"
    echo
    echo "Command: \`bash scripts/test_versions.sh${pairs:+ ${pairs[*]}}\` (runs \`python -m pytest tests/kernels\` in a fresh venv per pair)."
    echo "Date: $(date -u +%Y-%m-%dT%H:%MZ); commit: $commit$dirty; machine: $(nproc) cores, $(uname -m), Python $(python3 -c 'import platform; print(platform.python_version())')."
    echo
    echo "| pair (installed) | passed | failed | skipped | seconds |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} | tee "$output"
exit $status
