"""NeuS2's progressive training of the hash-grid levels (NeuS2_TCNN ``encodings/grid.h``, ``set_training_step``).

At training step ``s`` the grid encoding zeroes every level whose index exceeds

    valid_level(s) = L                                                   if s <= 0
                     min(L, ceil(0.2 * L + 0.02 * max(0, s - 200)))      otherwise

(``base_valid_level_scale`` 0.2, ``valid_level_scale`` 0.02 and ``base_training_step`` 200 in the DTU config), i.e.
levels ``0 .. valid_level`` are active: ``valid_level + 1`` of them (the kernel tests ``level > valid_level``). With
L = 14 that is 4 levels from step 1, one more every 50 steps after step 210, and all 14 from step 661. Step 0 runs
with every level, as the official code (its ``m_training_step <= 0`` branch). Masked levels output zero features and
receive zero gradients (their table entries and their position derivatives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor


@dataclass
class ProgressiveLevelsConfig:
    """Schedule of the active hash-grid levels (NeuS2 ``configs/nerf/dtu.json`` ``encoding``)."""

    enabled: bool = True
    """Mask the finer levels early in training; False keeps every level active from the start."""
    base_valid_level_scale: float = 0.2
    """Fraction of the levels valid from the start (``base_valid_level_scale``)."""
    valid_level_scale: float = 0.02
    """Levels added per step after ``base_training_step`` (``valid_level_scale``)."""
    base_training_step: int = 200
    """Step after which more levels are added (``base_training_step``)."""


def valid_level(step: int, n_levels: int, config: ProgressiveLevelsConfig) -> int:
    """The highest active level index at ``step`` (float32 arithmetic as the C++ code; see the module docstring)."""
    if not config.enabled or step <= 0:
        return n_levels
    growth = np.float32(config.valid_level_scale) * np.float32(max(0, step - config.base_training_step))
    value = np.float32(np.float32(config.base_valid_level_scale) * np.float32(n_levels) + growth)
    return min(n_levels, int(math.ceil(float(value))))


def active_levels(step: int, n_levels: int, config: ProgressiveLevelsConfig) -> int:
    """How many levels (the coarsest ones) contribute at ``step``: ``min(L, valid_level + 1)``."""
    return min(n_levels, valid_level(step, n_levels, config) + 1)


def level_feature_mask(
    step: int, n_levels: int, n_features_per_level: int, config: ProgressiveLevelsConfig
) -> Float[Tensor, "l*f"]:
    """``[L*F]`` float mask over the level-major encoding: 1 for the features of active levels, 0 for the others."""
    mask = torch.zeros(n_levels, n_features_per_level)
    mask[: active_levels(step, n_levels, config)] = 1.0
    return mask.reshape(-1)
