"""The colour network's learning-rate schedule in C3DGS: linear warm-up, then step decay."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Tuple, Type

from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


@dataclass
class WarmupMultiStepSchedulerConfig(SchedulerConfig):
    """``lr_init * warm-up(step) * gamma ** (#milestones <= step)``; warm-up rises linearly from
    ``warmup_start_factor`` to 1 over ``warmup_steps`` (PyTorch's ``LinearLR`` chained with ``MultiStepLR``, as the
    official code builds it)."""

    _target: Type = field(default_factory=lambda: WarmupMultiStepScheduler)
    warmup_steps: int = 100
    """Steps of the linear warm-up."""
    warmup_start_factor: float = 0.01
    """Fraction of the learning rate at step 0."""
    milestones: Tuple[int, ...] = (5000, 15000, 25000)
    """Steps at which the learning rate is multiplied by ``gamma``."""
    gamma: float = 0.33
    """Decay factor at each milestone."""


class WarmupMultiStepScheduler(Scheduler):
    """See :class:`WarmupMultiStepSchedulerConfig`."""

    config: WarmupMultiStepSchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> LRScheduler:
        cfg = self.config
        milestones = sorted(cfg.milestones)

        def factor(step: int) -> float:
            progress = min(step / cfg.warmup_steps, 1.0) if cfg.warmup_steps > 0 else 1.0
            warmup = cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * progress
            return warmup * cfg.gamma ** bisect_right(milestones, step)

        return LambdaLR(optimizer, lr_lambda=factor)
