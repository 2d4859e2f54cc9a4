"""Let torch >= 2.6 load nerfstudio 1.1.5 checkpoints without ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``.

torch 2.6 made ``torch.load`` default to ``weights_only=True``. nerfstudio 1.1.5 calls ``torch.load(path,
map_location=...)`` when resuming, in ``ns-eval``/``ns-render``/``ns-viewer`` (``eval_utils.eval_load_checkpoint``)
and in ``ns-export``. Its checkpoints hold numpy scalars (learning-rate scheduler state), which the safe
unpickler rejects ("Unsupported global: numpy.core.multiarray.scalar"). Rather than switching safe loading off,
we allow-list exactly the numpy types these checkpoints contain; everything else still goes through the safe
unpickler.
"""

from __future__ import annotations

import numpy as np
import torch


def _numpy_checkpoint_globals() -> list:
    found = [np.dtype]
    for module_name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            module = __import__(module_name, fromlist=["scalar"])
        except ImportError:
            continue
        found.append(module.scalar)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
            if hasattr(dtypes, name):
                found.append(getattr(dtypes, name))
    return found


def allow_nerfstudio_checkpoints() -> None:
    """Allow-list the numpy globals in nerfstudio checkpoints for ``torch.load(weights_only=True)``. Idempotent."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4 loads with weights_only=False by default
        return
    add_safe_globals(_numpy_checkpoint_globals())
