"""PVD's three distillation stages, their loss weights and the density clamp (official ``distill_mutual``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet

import torch
from jaxtyping import Float
from torch import Tensor

FEATURES, DENSITY, COLOR, RGB = "features", "density", "color", "rgb"
"""Names of the four distillation terms."""


@dataclass
class PVDScheduleConfig:
    """When each distillation term is on, and its weight (official ``main_distill_mutual.py`` flags)."""

    stage1_end: int = 3000
    """First step of stage 2; steps before it distil only the intermediate features (``--stage_iters``)."""
    stage2_end: int = 5000
    """First step of stage 3; stage 2 adds the density and colour terms, stage 3 the rendered colour."""
    feature_weight: float = 2e-3
    """Initial weight of the feature term (``--loss_rate_fea_sc``)."""
    feature_decay: float = 0.995
    """Per-step multiplicative decay of the feature weight, applied from the first step in every stage."""
    density_weight: float = 2e-3
    """Weight of the pre-activation density term (``--loss_rate_sigma``), stages 2 and 3."""
    color_weight: float = 2e-3
    """Weight of the per-sample colour term (``--loss_rate_color``), stages 2 and 3."""
    rgb_weight: float = 1.0
    """Weight of the rendered-colour term (``--loss_rate_rgb``), stage 3."""
    vm_l1_weight: float = 1e-4
    """L1 penalty on a VM (TensoRF) student's density factors (``--l1_reg_weight``), stage 3."""
    density_clip_min: float = -2.0
    """Lower clamp of the pre-activation density (``--sigma_clip_min``)."""
    density_clip_max: float = 7.0
    """Upper clamp of the pre-activation density (``--sigma_clip_max``)."""

    def stage(self, step: int, skip_stage1: bool = False) -> int:
        """1, 2 or 3 at training step ``step`` (1-based, as the official ``global_step``).

        ``skip_stage1``: teacher or student has no intermediate features (Plenoxels-style tensors); the official
        code then sets ``stage1 = -1``.
        """
        if step < self.stage1_end and not skip_stage1:
            return 1
        return 2 if step < self.stage2_end else 3

    def active_terms(self, step: int, skip_stage1: bool = False) -> FrozenSet[str]:
        """The distillation terms that enter the loss at ``step``."""
        stage = self.stage(step, skip_stage1)
        terms = {FEATURES} if not skip_stage1 else set()
        if stage >= 2:
            terms |= {DENSITY, COLOR}
        if stage == 3:
            terms.add(RGB)
        return frozenset(terms)

    def feature_weight_at(self, step: int) -> float:
        """Feature weight at ``step``: the official code multiplies it by 0.995 before every step's loss."""
        return self.feature_weight * self.feature_decay ** max(step, 0)

    def clamp_density(self, logit: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch"]:
        """Clamp a pre-activation density to ``[density_clip_min, density_clip_max]`` (PVD's density treatment)."""
        return torch.clamp(logit, self.density_clip_min, self.density_clip_max)


def norm_l2(prediction: Tensor, target: Tensor) -> Tensor:
    """The official ``normL2`` loss: the Euclidean norm of the whole difference (not a mean of squares)."""
    return torch.linalg.vector_norm((prediction - target).float())
