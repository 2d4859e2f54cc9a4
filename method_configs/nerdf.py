"""NeRDF: Efficient View Synthesis with Neural Radiance Distribution Field (Wu et al., ICCV 2023), a student that
distils a trained nerfstudio model (``--pipeline.datamanager.teacher-config outputs/.../config.yml``).

``nerdf``: the official LLFF recipe (``configs/*_nerdf.txt`` of yushuang-wu/NeRDF @45546129: forward-facing scenes
in NDC, 8x384 network, 600k steps). ``nerdf-blender``: the official Lego recipe (``configs/lego_nerdf.txt``: 32x512,
1.2M steps, samples between 2 and 6, white background, no density constraint). Values and sources:
``docs/nerdf.md``.
"""

from __future__ import annotations

from typing import Literal

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from method_configs._common import adam_exponential_decay
from ng_methods.data.blender import NgBlenderDataParserConfig
from ng_methods.data.llff import LLFFDataParserConfig
from ng_methods.distill.datamanager import TeacherDataManagerConfig
from ng_methods.distill.nerdf.model import NeRDFModelConfig

LEARNING_RATE = 5e-4
"""``lrate`` (``option.py:53``)."""
STEPS = {"llff": 600_000, "blender": 1_200_000}
"""``N_iters`` of ``configs/fern_nerdf.txt`` and ``configs/lego_nerdf.txt``."""
DECAY_STEPS = {"llff": 250_000, "blender": 500_000}
"""``lrate_decay * 1000``: the learning rate falls 10x every this many steps (``nerdf_llff.py:782-786``)."""
RAYS_PER_BATCH = {"llff": 2048, "blender": 1024}
"""``N_rand``: rays per step, all from one new random pose (``xpose_iters = 1``)."""


def nerdf_optimizers(preset: Literal["llff", "blender"]) -> dict:
    """Adam (torch defaults: betas 0.9/0.999, eps 1e-8) at ``5e-4 * 0.1^(step / decay_steps)`` for the run."""
    steps = STEPS[preset]
    final = LEARNING_RATE * 0.1 ** (steps / DECAY_STEPS[preset])
    return {"nerdf": adam_exponential_decay(lr=LEARNING_RATE, lr_final=final, max_steps=steps, eps=1e-8)}


def _model(preset: Literal["llff", "blender"]) -> NeRDFModelConfig:
    if preset == "llff":
        return NeRDFModelConfig()
    return NeRDFModelConfig(
        ray_parameterization="near_far", near_plane=2.0, far_plane=6.0, network_depth=32, network_width=512,
        num_samples_train=64, num_samples_eval=64, raw_noise_std=0.0, background_color="white",
        sigma_loss_weight=0.0,
    )


def nerdf_trainer_config(preset: Literal["llff", "blender"]) -> TrainerConfig:
    """The full NeRDF recipe for forward-facing LLFF scenes ("llff") or Blender objects ("blender")."""
    if preset == "llff":
        dataparser = LLFFDataParserConfig(downscale_factor=4, holdout_every=8)
    else:
        dataparser = NgBlenderDataParserConfig(alpha_color="white")
    return TrainerConfig(
        method_name="nerdf" if preset == "llff" else "nerdf-blender",
        steps_per_eval_batch=500,
        steps_per_eval_image=5000,
        steps_per_eval_all_images=50000,
        steps_per_save=10000,
        max_num_iterations=STEPS[preset],
        mixed_precision=False,
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=TeacherDataManagerConfig(
                dataparser=dataparser,
                train_num_rays_per_batch=RAYS_PER_BATCH[preset],
                eval_num_rays_per_batch=4096,
                novel_pose_fraction=1.0,
                scene_kind="forward_facing" if preset == "llff" else "sphere",
            ),
            model=_model(preset),
        ),
        optimizers=nerdf_optimizers(preset),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 12),
        vis="viewer",
    )


nerdf = MethodSpecification(
    config=nerdf_trainer_config("llff"),
    description="NeRDF student (ICCV 2023): distils a trained model (--pipeline.datamanager.teacher-config) into "
    "one 8x384 MLP forward per ray and a 24-term Fourier radiance distribution; forward-facing scenes (NDC).",
)
nerdf_blender = MethodSpecification(
    config=nerdf_trainer_config("blender"),
    description="NeRDF student, official Lego recipe (32x512, near 2 / far 6, white background); bounded scenes.",
)
