"""MobileR2L (Cao et al., CVPR 2023): a real-time neural light field distilled from a trained NeRF teacher.

Official code: snap-research/MobileR2L @4f8929e (``script/benchmarking_llff.sh``, ``script/benchmarking_nerf.sh``,
``main.py`` defaults). Train a teacher first (any nerfstudio method), then::

    ns-train mobile-r2l --pipeline.datamanager.teacher-config outputs/<scene>/<teacher>/<run>/config.yml

``mobile-r2l`` is the forward-facing (LLFF, NDC, x12 super-resolution) recipe, ``mobile-r2l-blender`` the
360-degree object (Blender, x8) one. Recipe cards: ``docs/mobile-r2l.md``.
"""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from ng_methods.distill.mobile_r2l.datamanager import MobileR2LDataManagerConfig
from ng_methods.distill.mobile_r2l.model import MobileR2LModelConfig
from ng_methods.distill.mobile_r2l.schedule import AdamWOptimizerConfig, WarmupExponentialDecaySchedulerConfig

MAX_STEPS = 600_000
"""``--num_iters 600000`` (script/benchmarking_llff.sh:12, benchmarking_nerf.sh:12)."""


def mobile_r2l_trainer_config(scene: str) -> TrainerConfig:
    """The official recipe for ``scene`` = "llff" (forward-facing, NDC, x12) or "blender" (360 objects, x8)."""
    forward_facing = scene == "llff"
    if forward_facing:  # --ff --ndc: near 0, far 1 in NDC (data/data_utils.py:53-54)
        model = MobileR2LModelConfig(scene_kind="forward_facing", use_ndc=True, near_plane=0.0, far_plane=1.0)
    else:  # Blender: near 2, far 6 (data/data_utils.py:78-79)
        model = MobileR2LModelConfig(scene_kind="sphere", use_ndc=False, near_plane=2.0, far_plane=6.0)
    return TrainerConfig(
        method_name="mobile-r2l" if forward_facing else "mobile-r2l-blender",
        steps_per_eval_batch=10_000,
        steps_per_eval_image=10_000,  # --i_testset 10000
        steps_per_eval_all_images=MAX_STEPS,
        steps_per_save=10_000,  # --i_weights 10000 (main.py:82)
        max_num_iterations=MAX_STEPS,
        mixed_precision=True,  # --amp
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=MobileR2LDataManagerConfig(
                images_per_batch=10,
                num_pseudo_images=8000 if forward_facing else 10_000,
                scene_kind="forward_facing" if forward_facing else "sphere",
            ),
            model=model,
        ),
        optimizers={
            "network": {
                "optimizer": AdamWOptimizerConfig(lr=5e-4, eps=1e-8, weight_decay=0.01),
                "scheduler": WarmupExponentialDecaySchedulerConfig(
                    lr_pre_warmup=1e-4, warmup_steps=200, decay_rate=0.1, decay_steps=500_000
                ),
            }
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


mobile_r2l = MethodSpecification(
    config=mobile_r2l_trainer_config("llff"),
    description="MobileR2L student (forward-facing, NDC, x12 super-resolution) distilled from a trained teacher",
)
mobile_r2l_blender = MethodSpecification(
    config=mobile_r2l_trainer_config("blender"),
    description="MobileR2L student (360-degree objects, x8 super-resolution) distilled from a trained teacher",
)
