"""PVD-AL students (Fang et al., "Progressive Volume Distillation with Active Learning", arXiv 2304.04012):
convert a trained nerfstudio teacher (``--pipeline.datamanager.teacher-config .../config.yml``) into another
architecture. ``pvd-al`` is the paper's headline conversion, hash grid -> MLP NeRF; the presets change the student.
Values follow the official code (megvii-research/AAAI2023-PVD, branch PVD-AL); see ``docs/pvd-al.md``."""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from ng_methods.distill.pvd.datamanager import PVDDataManagerConfig
from ng_methods.distill.pvd.fields import StudentKind
from ng_methods.distill.pvd.model import PVDModelConfig
from ng_methods.distill.pvd.optim import adamw_cosine
from ng_methods.distill.pvd.pipeline import PVDPipelineConfig
from ng_methods.ngpc.sampler import OccupancySamplerConfig

MAX_STEPS = 30000
"""Official ``--iters 30000``."""
LEARNING_RATE = 1e-2
"""Official ``--lr 1e-2``; an MLP student gets a tenth of it (``main_distill_mutual.py``)."""
FINAL_LEARNING_RATE = 7e-5
"""``CosineAnnealingLR(eta_min=7e-5)`` that ``Trainer.train`` installs for random-pose distillation."""
VM_HEAD_LEARNING_RATE = 1e-3
"""The VM student's colour head and basis matrix (official ``get_params(lr, lr2=1e-3)``)."""

_STUDENTS = {
    "mlp": "MLP NeRF (8x256, PE 10, skip after layer 4) on Instant-NGP heads",
    "hashgrid": "Instant-NGP hash grid",
    "densegrid": "multi-resolution dense grid",
    "lowres-densegrid": "low-resolution (128^3) dense grid",
    "vm": "TensoRF VM decomposition",
}


def pvd_trainer_config(student: StudentKind, method_name: str) -> TrainerConfig:
    """The full PVD-AL recipe for one student architecture (Blender-style bounded scenes)."""
    lr = LEARNING_RATE * (0.1 if student == "mlp" else 1.0)
    optimizers = {"student": adamw_cosine(lr, FINAL_LEARNING_RATE, MAX_STEPS)}
    if student == "vm":
        optimizers["student_heads"] = adamw_cosine(VM_HEAD_LEARNING_RATE, FINAL_LEARNING_RATE, MAX_STEPS)
    return TrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=500,
        steps_per_eval_image=2000,
        steps_per_save=2000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=True,
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=PVDPipelineConfig(
            datamanager=PVDDataManagerConfig(train_num_rays_per_batch=4096, eval_num_rays_per_batch=4096),
            model=PVDModelConfig(
                student=student,
                sampler=OccupancySamplerConfig(grid_levels=1, cone_angle=0.0, alpha_thre=0.0),
                background_color="random",
            ),
        ),
        optimizers=optimizers,
        viewer=ViewerConfig(num_rays_per_chunk=1 << 12),
        vis="viewer",
    )


def _spec(student: StudentKind, method_name: str) -> MethodSpecification:
    return MethodSpecification(
        config=pvd_trainer_config(student, method_name),
        description=f"PVD-AL distillation of a trained teacher into a {_STUDENTS[student]} student.",
    )


pvd_al = _spec("mlp", "pvd-al")
pvd_al_hash = _spec("hashgrid", "pvd-al-hash")
pvd_al_dense = _spec("densegrid", "pvd-al-dense")
pvd_al_lowres_dense = _spec("lowres-densegrid", "pvd-al-lowres-dense")
pvd_al_vm = _spec("vm", "pvd-al-vm")
