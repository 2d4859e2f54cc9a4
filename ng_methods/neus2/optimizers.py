"""NeuS2's optimizer as nerfstudio configs: tcnn's Adam (beta2 0.99, eps 1e-15, L2 on the MLP matrices only) under
its ``ExponentialDecay`` (x0.33 every 10k steps from step 20k), ``configs/nerf/dtu.json``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple, Type

import torch
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import MultiStepSchedulerConfig


@dataclass
class AdamBetasOptimizerConfig(AdamOptimizerConfig):
    """``torch.optim.Adam`` with configurable betas (nerfstudio's ``AdamOptimizerConfig`` fixes (0.9, 0.999))."""

    _target: Type = torch.optim.Adam
    betas: Tuple[float, float] = (0.9, 0.99)
    """Adam's moment decays (tcnn ``beta1`` / ``beta2``)."""


def step_decay_milestones(max_steps: int, start: int = 20000, interval: int = 10000) -> Tuple[int, ...]:
    """Steps at which tcnn's ``ExponentialDecay`` multiplies the learning rate (``decay_start``, every
    ``decay_interval``), up to ``max_steps``: none for a 15k-step DTU run."""
    return tuple(range(start, max_steps, interval))


def neus2_adam(max_steps: int, lr: float = 1e-2, l2_reg: float = 0.0) -> Dict[str, object]:
    """One parameter group's optimizer and scheduler (``l2_reg`` only for the MLP weights, as tcnn)."""
    return {
        "optimizer": AdamBetasOptimizerConfig(lr=lr, eps=1e-15, weight_decay=l2_reg, betas=(0.9, 0.99)),
        "scheduler": MultiStepSchedulerConfig(
            max_steps=max_steps, gamma=0.33, milestones=step_decay_milestones(max_steps)
        ),
    }
