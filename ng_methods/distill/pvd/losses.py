"""The PVD-AL loss of one training batch: staged feature, density, colour and rendered-colour terms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional

import torch
from torch import Tensor, nn

from ng_methods.distill.pvd.active_learning import ActiveLearningConfig, hard_point_mask
from ng_methods.distill.pvd.schedule import COLOR, DENSITY, FEATURES, RGB, PVDScheduleConfig, norm_l2

if TYPE_CHECKING:
    from ng_methods.distill.pvd.model import _Distillation


def _point_mask(active: ActiveLearningConfig, pvd: "_Distillation") -> Optional[Tensor]:
    """Stage-3 point-level selection: the union of the teacher's and the student's high-weight samples."""
    if not active.point_level:
        return None
    n_rays = pvd.student_rgb.shape[0]
    masks = [hard_point_mask(rendered.weights.detach(), pvd.ray_indices, n_rays, active.hard_points_ratio,
                             active.hard_points_min_accumulation) for rendered in (pvd.teacher, pvd.student)]
    return masks[0] | masks[1]


def distillation_losses(
    schedule: PVDScheduleConfig, active: ActiveLearningConfig, step: int, skip_stage1: bool,
    pvd: "_Distillation", projector: nn.Module, vm_l1: Optional[Tensor],
) -> Dict[str, Tensor]:
    """Weighted loss terms active at ``step`` (official ``train_step``; ``normL2`` everywhere).

    Without a queryable teacher field (``pvd.teacher.query`` is None) only the rendered colour is distilled.
    """
    if pvd.teacher.query is None:
        return {"rgb_distill": schedule.rgb_weight * norm_l2(pvd.student_rgb, pvd.teacher_rgb)}
    terms = schedule.active_terms(step, skip_stage1)
    stage = schedule.stage(step, skip_stage1)
    mask = _point_mask(active, pvd) if stage == 3 else None
    student, teacher = pvd.student.query, pvd.teacher.query

    def pick(values: Tensor) -> Tensor:
        return values if mask is None else values[mask]

    losses: Dict[str, Tensor] = {}
    if FEATURES in terms and student.features is not None and teacher.features is not None:
        losses["feature_distill"] = schedule.feature_weight_at(step) * norm_l2(
            pick(projector(student.features)), pick(teacher.features))
    if DENSITY in terms:
        losses["density_distill"] = schedule.density_weight * norm_l2(
            pick(student.density_logit), pick(teacher.density_logit))
    if COLOR in terms:
        losses["color_distill"] = schedule.color_weight * norm_l2(pick(student.rgb), pick(teacher.rgb))
    if RGB in terms:
        losses["rgb_distill"] = schedule.rgb_weight * norm_l2(pvd.student_rgb, pvd.teacher_rgb)
        if vm_l1 is not None and schedule.vm_l1_weight > 0:
            losses["vm_l1"] = schedule.vm_l1_weight * vm_l1
    if not losses:  # e.g. stage 1 with a feature-less pair: keep the graph alive with a zero
        losses["feature_distill"] = torch.zeros((), device=pvd.student_rgb.device) * pvd.student_rgb.sum()
    return losses
