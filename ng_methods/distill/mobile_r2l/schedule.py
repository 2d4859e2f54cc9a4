"""MobileR2L's optimiser and learning-rate schedule as nerfstudio configs.

snap-research/MobileR2L @4f8929e:

- ``torch.optim.AdamW(params, lr=args.lrate, betas=(0.9, 0.999))`` (model/engine.py:90-94), i.e. torch's AdamW
  defaults otherwise: ``eps=1e-8``, ``weight_decay=0.01``. nerfstudio 1.1.5 has no AdamW config, hence
  :class:`AdamWOptimizerConfig`.
- ``_scheduel_lr`` (engine.py:586-600) with ``--lrate 5e-4 --lrate_decay 500 --warmup_lr 0.0001,200``
  (main.py:56-59): a linear warm-up from 1e-4 to 5e-4 over 200 steps, then ``5e-4 * 0.1 ** ((step - 200) / 500k)``.
  nerfstudio's ``ExponentialDecayScheduler`` interpolates towards an ``lr_final`` at ``max_steps`` instead of
  naming the decay rate, hence :class:`WarmupExponentialDecaySchedulerConfig` with the official knobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

import torch
from nerfstudio.engine.optimizers import OptimizerConfig
from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

__all__ = ["AdamWOptimizerConfig", "WarmupExponentialDecayScheduler", "WarmupExponentialDecaySchedulerConfig"]


@dataclass
class AdamWOptimizerConfig(OptimizerConfig):
    """``torch.optim.AdamW`` (decoupled weight decay)."""

    _target: Type = torch.optim.AdamW
    """The optimizer class to use."""
    weight_decay: float = 0.01
    """Decoupled weight decay (torch's AdamW default, which the official code keeps)."""


@dataclass
class WarmupExponentialDecaySchedulerConfig(SchedulerConfig):
    """Linear warm-up from ``lr_pre_warmup`` to the optimizer's lr, then ``lr * decay_rate ** (t / decay_steps)``
    where ``t`` counts the steps after the warm-up (official ``_scheduel_lr``)."""

    _target: Type = field(default_factory=lambda: WarmupExponentialDecayScheduler)
    """target class to instantiate"""
    lr_pre_warmup: float = 1e-4
    """Learning rate at step 0 (``--warmup_lr`` start)."""
    warmup_steps: int = 200
    """Steps of the linear warm-up (``--warmup_lr`` end)."""
    decay_rate: float = 0.1
    """Factor applied every ``decay_steps`` steps after the warm-up (engine.py:587)."""
    decay_steps: int = 500_000
    """``--lrate_decay`` (500) x 1000 (engine.py:588)."""


class WarmupExponentialDecayScheduler(Scheduler):
    """See :class:`WarmupExponentialDecaySchedulerConfig`."""

    config: WarmupExponentialDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> LRScheduler:
        return LambdaLR(optimizer, lr_lambda=_LearningRateFactor(self.config, lr_init))


class _LearningRateFactor:
    """``lr(step) / lr_init``; a plain object so ``LambdaLR.state_dict`` stores only numbers."""

    def __init__(self, config: WarmupExponentialDecaySchedulerConfig, lr_init: float):
        self.lr_init = float(lr_init)
        self.lr_pre_warmup = float(config.lr_pre_warmup)
        self.warmup_steps = int(config.warmup_steps)
        self.decay_rate = float(config.decay_rate)
        self.decay_steps = float(config.decay_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            lr = self.lr_pre_warmup + (self.lr_init - self.lr_pre_warmup) * step / self.warmup_steps
        else:
            lr = self.lr_init * self.decay_rate ** ((step - self.warmup_steps) / self.decay_steps)
        return lr / self.lr_init
