"""PVD-AL student model: the student field renders on the teacher's samples and matches it stage by stage."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as config_field
from typing import Dict, List, Optional, Tuple, Type

import torch
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.models.base_model import Model
from torch import Tensor
from torch.nn import Parameter

from ng_methods.compat.lpips import make_lpips
from ng_methods.distill.datamanager import concatenate_ray_bundles
from ng_methods.distill.pvd.active_learning import ActiveLearningConfig, HardRayPool
from ng_methods.distill.pvd.adapters import (
    FeatureProjector,
    FieldAdapter,
    SampleQuery,
    TensoRFAdapter,
    adapter_for,
    teacher_adapter_or_warn,
)
from ng_methods.distill.pvd.fields import MLPNeRFConfig, StudentKind, VMConfig, build_student_field
from ng_methods.distill.pvd.losses import distillation_losses
from ng_methods.distill.pvd.schedule import PVDScheduleConfig
from ng_methods.distill.teacher import render_teacher_rays
from ng_methods.kernels.volume_rendering import composite
from ng_methods.ngpc.model import NGPCModel, NGPCModelConfig
from ng_methods.ngpc.sampler import OccupancySampler


@dataclass
class PVDModelConfig(NGPCModelConfig):
    """PVD-AL student: architecture, stage schedule and active learning (``field`` sizes grid students' heads)."""

    _target: Type = config_field(default_factory=lambda: PVDModel)
    student: StudentKind = "mlp"
    """Student architecture (official ``--model_type``: mlp, hash, vm; dense grids from NGPC)."""
    mlp: MLPNeRFConfig = config_field(default_factory=MLPNeRFConfig)
    """MLP student body."""
    vm: VMConfig = config_field(default_factory=VMConfig)
    """VM (TensoRF) student sizes."""
    schedule: PVDScheduleConfig = config_field(default_factory=PVDScheduleConfig)
    """Stages, loss weights, density clamp."""
    active: ActiveLearningConfig = config_field(default_factory=ActiveLearningConfig)
    """Image-, ray- and point-level active learning."""


@dataclass
class _Rendered:
    """One field's samples and composited colour on a (possibly extended) training batch."""

    query: SampleQuery
    rgb: Tensor
    accumulation: Tensor
    depth: Tensor
    weights: Tensor


class PVDModel(NGPCModel):
    """Student renders with its own occupancy grid at eval time; while training, on the teacher's samples."""

    config: PVDModelConfig

    def populate_modules(self) -> None:
        Model.populate_modules(self)
        contraction = SceneContraction(order=float("inf")) if self.config.scene_contraction else None
        self.field = build_student_field(self.config.student, self.config.field, self.config.mlp, self.config.vm,
                                         self.scene_box.aabb, contraction)
        self.student_adapter: FieldAdapter = adapter_for(self.field)
        self.sampler = OccupancySampler(self.config.sampler, self.scene_box.aabb.flatten())
        self.s3im = None
        self.lpips = make_lpips()
        self.projector = FeatureProjector(1, 1)
        self.ray_pool = HardRayPool(self.config.active.hard_rays_pool_size, self.config.active.hard_rays_ratio)
        self.step = 0
        self._teacher: List = []  # a plain list: the teacher is not a submodule (not saved, not optimised)
        self.teacher_adapter: Optional[FieldAdapter] = None

    def attach_teacher(self, teacher) -> None:
        """Use ``teacher`` (a loaded :class:`ng_methods.distill.teacher.Teacher`) as the distillation target."""
        teacher_contracts = getattr(teacher.model.config, "scene_contraction", self.config.scene_contraction)
        if teacher_contracts != self.config.scene_contraction:
            raise ValueError(
                f"Teacher {teacher.config_path} {'uses' if teacher_contracts else 'does not use'} scene contraction "
                f"but the PVD student {'does not' if teacher_contracts else 'does'}: set "
                f"--pipeline.model.scene-contraction {teacher_contracts} (and the occupancy grid levels/cone angle "
                "of the teacher) so both fields cover the same space.")
        self._teacher = [teacher]
        self.teacher_adapter = teacher_adapter_or_warn(teacher.model)
        student_dim = self.student_adapter.feature_dim
        teacher_dim = None if self.teacher_adapter is None else self.teacher_adapter.feature_dim
        if student_dim is not None and teacher_dim is not None:
            self.projector = FeatureProjector(student_dim, teacher_dim).to(self.device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Rebuild a trained feature projector before loading (it is sized by the teacher, absent at eval time)."""
        weight = state_dict.get("projector.linear.weight")
        if weight is not None and self.projector.linear is None:
            self.projector = FeatureProjector(weight.shape[1], weight.shape[0]).to(weight.device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def teacher(self):
        return self._teacher[0] if self._teacher else None

    @property
    def skip_stage1(self) -> bool:
        """Plenoxels-style fields have no intermediate features: the official code drops stage 1."""
        teacher_dim = None if self.teacher_adapter is None else self.teacher_adapter.feature_dim
        return self.student_adapter.feature_dim is None or teacher_dim is None

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        def before_step(step: int) -> None:
            self.step = step + 1  # the official global_step is 1 at the first iteration
            self.sampler.update(step, self.student_density)  # the student's own grid, for eval and rendering

        return [TrainingCallback(where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                                 update_every_num_iters=1, func=before_step)]

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        projector = list(self.projector.parameters())
        if self.config.student != "vm":
            return {"student": list(self.field.parameters()) + projector}
        factors = list(self.field.density_encoding.parameters()) + list(self.field.color_encoding.parameters())
        factor_ids = {id(p) for p in factors}
        heads = [p for p in self.field.parameters() if id(p) not in factor_ids and p.requires_grad]
        return {"student": factors, "student_heads": heads + projector}

    def student_density(self, positions: Tensor) -> Tensor:
        """Student density at world positions (for its occupancy grid)."""
        return self.student_adapter.density_at(positions, self.config.schedule.clamp_density)

    def _render(self, query: SampleQuery, samples: RaySamples, ray_indices: Tensor, n_rays: int) -> _Rendered:
        starts, ends = samples.frustums.starts[:, 0], samples.frustums.ends[:, 0]
        rgb, depth, accumulation, weights = composite(starts, ends, query.density[:, 0], query.rgb, ray_indices,
                                                      n_rays)
        return _Rendered(query, rgb, accumulation, depth / accumulation.clamp(min=1e-10), weights)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        if not self.training or self.teacher is None:
            return self._student_outputs(ray_bundle)
        return self._distillation_outputs(ray_bundle)

    def _student_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        n_rays = len(ray_bundle)
        samples, ray_indices = self.sampler(ray_bundle, self.student_density)
        rendered = self._render(self.student_adapter.query(samples, self.config.schedule.clamp_density), samples,
                                ray_indices, n_rays)
        background = self._background(self.config.eval_background_color, rendered.rgb)
        return {
            "rgb": rendered.rgb + (1.0 - rendered.accumulation) * background,
            "accumulation": rendered.accumulation, "depth": rendered.depth,
            "num_samples_per_ray": torch.bincount(ray_indices, minlength=n_rays)[:, None].float(),
        }

    def _with_replayed_rays(self, ray_bundle: RayBundle) -> Tuple[RayBundle, Optional[Tensor]]:
        """Ray-level active learning: append 10% pooled hard rays to a stage-3 batch once the pool is full."""
        slots = self.ray_pool.draw(len(ray_bundle)) if self.config.active.ray_level else None
        if slots is None or len(slots) == 0:
            return ray_bundle, None
        return concatenate_ray_bundles(ray_bundle, RayBundle(**self.ray_pool.bundle(slots))), slots

    def _teacher_samples(self, ray_bundle: RayBundle) -> Tuple[RaySamples, Tensor]:
        """The samples the teacher marches (official ``inherited_params``); the student's own when it has none."""
        teacher_model = self.teacher.model
        if isinstance(getattr(teacher_model, "sampler", None), OccupancySampler):
            return teacher_model.sampler(ray_bundle, teacher_model.field.density_fn)
        return self.sampler(ray_bundle, self.student_density)

    def _distillation_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        n_base = len(ray_bundle)
        stage = self.config.schedule.stage(self.step, self.skip_stage1)
        replayed = None
        if stage == 3 and self.teacher_adapter is not None:
            ray_bundle, replayed = self._with_replayed_rays(ray_bundle)
        n_rays = len(ray_bundle)
        samples, ray_indices = self._teacher_samples(ray_bundle)
        clamp = self.config.schedule.clamp_density
        student = self._render(self.student_adapter.query(samples, clamp), samples, ray_indices, n_rays)
        teacher = self._teacher_rendering(ray_bundle, samples, ray_indices)
        if teacher.query is None:  # the teacher's own render is already on its eval background
            background = self._background(self.config.eval_background_color, student.rgb)
        elif self.config.background_color == "random":  # the same random colour behind teacher and student
            background = torch.rand_like(student.rgb)
        else:
            background = self._background(self.config.background_color, student.rgb)
        student_rgb = student.rgb + (1.0 - student.accumulation) * background
        teacher_rgb = teacher.rgb if teacher.query is None else teacher.rgb + (1.0 - teacher.accumulation) * background
        return {
            "rgb": student_rgb[:n_base], "accumulation": student.accumulation[:n_base],
            "depth": student.depth[:n_base], "teacher_rgb": teacher_rgb[:n_base],
            "num_samples_per_ray": torch.bincount(ray_indices, minlength=n_rays)[:n_base, None].float(),
            "pvd": _Distillation(student, teacher, student_rgb, teacher_rgb, ray_bundle, ray_indices, n_base,
                                 replayed),
        }

    @torch.no_grad()
    def _teacher_rendering(self, ray_bundle: RayBundle, samples: RaySamples, ray_indices: Tensor) -> _Rendered:
        if self.teacher_adapter is None:  # RGB-only distillation: the teacher renders the rays its own way
            out = render_teacher_rays(self.teacher, ray_bundle)
            return _Rendered(None, out["rgb"], out["accumulation"], out["depth"], torch.empty(0))
        query = self.teacher_adapter.query(samples, self.config.schedule.clamp_density)
        return self._render(query, samples, ray_indices, len(ray_bundle))

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        if "teacher_rgb" not in outputs:  # eval batches: against the ground truth
            return super().get_metrics_dict(outputs, batch)
        mse = torch.mean((outputs["rgb"].detach() - outputs["teacher_rgb"]) ** 2)
        psnr = -10.0 * torch.log10(mse.clamp(min=1e-10))
        return {"psnr": psnr, "psnr_vs_teacher": psnr, "num_samples_per_batch": outputs["num_samples_per_ray"].sum()}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        if "pvd" not in outputs:  # eval batches: the student against the ground truth
            return {"rgb_loss": torch.mean((outputs["rgb"] - self._eval_target(batch["image"])) ** 2)}
        pvd: _Distillation = outputs["pvd"]
        stage = self.config.schedule.stage(self.step, self.skip_stage1)
        # the VM factors' L1 enters with the rendered colour (stage 3) only: not built before that
        vm_l1 = self.student_adapter.l1_density_factors() \
            if stage == 3 and isinstance(self.student_adapter, TensoRFAdapter) else None
        losses = distillation_losses(self.config.schedule, self.config.active, self.step, self.skip_stage1, pvd,
                                     self.projector, vm_l1)
        if pvd.teacher.query is not None and self.config.active.ray_level and stage == 3:
            errors = (pvd.student_rgb.detach() - pvd.teacher_rgb).abs().sum(dim=-1)
            self.ray_pool.update(pvd.ray_bundle, errors, pvd.n_base, pvd.replayed_slots)
        return losses


@dataclass
class _Distillation:
    """What the loss needs from one training batch (kept out of nerfstudio's output dict semantics)."""

    student: _Rendered
    teacher: _Rendered
    student_rgb: Tensor
    teacher_rgb: Tensor
    ray_bundle: RayBundle
    ray_indices: Tensor
    n_base: int
    replayed_slots: Optional[Tensor]
