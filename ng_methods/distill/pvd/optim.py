"""The official optimiser: AdamW (betas 0.9/0.99, eps 1e-15, torch's default weight decay 0.01), cosine decay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple, Type

import torch
from nerfstudio.engine.optimizers import OptimizerConfig
from nerfstudio.engine.schedulers import CosineDecaySchedulerConfig


@dataclass
class AdamWOptimizerConfig(OptimizerConfig):
    """``torch.optim.AdamW`` (nerfstudio 1.1.5 ships no AdamW config)."""

    _target: Type = torch.optim.AdamW
    betas: Tuple[float, float] = (0.9, 0.99)
    """Adam moment decays (official ``betas=(0.9, 0.99)``)."""
    weight_decay: float = 0.01
    """Decoupled weight decay; the official code keeps AdamW's default."""


def adamw_cosine(lr: float, lr_final: float, max_steps: int) -> Dict[str, object]:
    """AdamW at ``lr`` with ``CosineAnnealingLR(T_max=max_steps, eta_min=lr_final)`` stepped every iteration."""
    return {
        "optimizer": AdamWOptimizerConfig(lr=lr, eps=1e-15),
        "scheduler": CosineDecaySchedulerConfig(
            warm_up_end=0, learning_rate_alpha=round(lr_final / lr, 12), max_steps=max_steps),
    }
