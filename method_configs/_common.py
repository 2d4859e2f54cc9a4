"""Builders shared by the method configs, so optimizer and trainer blocks are not copied between methods."""

from __future__ import annotations

from typing import Dict, Iterable

from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig


def adam_exponential_decay(
    lr: float, lr_final: float, max_steps: int, eps: float = 1e-15, weight_decay: float = 0.0
) -> Dict[str, object]:
    """One nerfstudio optimizer entry: Adam with an exponential learning-rate decay to ``lr_final``."""
    return {
        "optimizer": AdamOptimizerConfig(lr=lr, eps=eps, weight_decay=weight_decay),
        "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps),
    }


def shared_schedule(groups: Iterable[str], **kwargs) -> Dict[str, Dict[str, object]]:
    """The same optimizer recipe for several parameter groups (each gets its own optimizer instance)."""
    return {group: adam_exponential_decay(**kwargs) for group in groups}
