#!/usr/bin/env bash
# The whole GPU check in one device call. Prepare once in the checkout (both paths are ignored by git):
#     echo /.gpu/ >> .git/info/exclude && cp -r ../shared/gpu .gpu
#     python scripts/gpu_check.py --export-data .gpu/data      # trimmed lego + D-NeRF lego + scan65, about 32 MB
# and right before each call (the copy on the device has no git history to read the commit from):
#     git describe --always --dirty --abbrev=40 > .gpu/source-commit
# then call the device with   command: bash scripts/gpu_check_on_device.sh   carry: [".gpu"]   timeout_s: 600
# (wheels 26 MB + data 32 MB + working tree 5 MB, about 61 MiB: under the 64 MiB a call may carry; the check
# itself takes at most about 9.5 minutes). Results come back under
# $OUT/gpu-check: gpu-check-cuda-*.{json,md}, logs/, and the benchmark scripts' own outputs. Extra arguments are
# passed on to gpu_check.py (e.g. --stages correctness kernels).
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source .gpu/setup-on-device.sh || exit 1
if ! python3 -c 'import pytest' 2>/dev/null; then  # the image has pytest (KINDS.md); carried wheels if it ever does not
  if compgen -G ".gpu/pytest-wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/pytest-wheels/*.whl
  else
    echo "gpu check: pytest is missing and .gpu/pytest-wheels has no wheels: the correctness stage will fail"
  fi
fi
data=.gpu/data
[ -d "$data" ] || data=../shared/data
# Checkpoints and training logs stay out of $OUT (/tmp/gpu-check-scratch), so what comes back stays small.
python3 scripts/gpu_check.py --output-dir "${OUT:-benchmarks}/gpu-check" --data "$data" \
  --scratch-dir /tmp/gpu-check-scratch "$@"
