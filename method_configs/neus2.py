"""NeuS2 (Wang et al., ICCV 2023) on DTU, as the official code runs it: ``scripts/run.py --network dtu.json
--n_steps 15000`` (19reborn/NeuS2 @081b8191, README "For training on DTU dataset")."""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.dynamic_batch import DynamicBatchPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from ng_methods.data.neus import NeuSDataParserConfig
from ng_methods.data.neus_dataset import NeuSDataManagerConfig
from ng_methods.neus2.model import NeuS2ModelConfig
from ng_methods.neus2.optimizers import neus2_adam

MAX_STEPS = 15000


def neus2_trainer_config(max_steps: int = MAX_STEPS) -> TrainerConfig:
    """NeuS2's DTU recipe: 2^18 samples a step, Adam 1e-2 (beta2 0.99, eps 1e-15), L2 1e-6 on the MLPs."""
    return TrainerConfig(
        method_name="neus2",
        steps_per_eval_batch=500,
        steps_per_eval_image=2500,
        steps_per_save=5000,
        max_num_iterations=max_steps,
        mixed_precision=False,
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=DynamicBatchPipelineConfig(
            # instant-ngp's dynamic batch: rays per step follow 2^18 / (measured samples per ray).
            target_num_samples=1 << 18,
            max_num_samples_per_ray=1024,
            datamanager=NeuSDataManagerConfig(
                dataparser=NeuSDataParserConfig(), train_num_rays_per_batch=4096, eval_num_rays_per_batch=4096
            ),
            model=NeuS2ModelConfig(),
        ),
        optimizers={
            "grid": neus2_adam(max_steps),
            "mlp": neus2_adam(max_steps, l2_reg=1e-6),
            "variance": neus2_adam(max_steps),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 12),
        vis="viewer",
    )


neus2 = MethodSpecification(
    config=neus2_trainer_config(),
    description="NeuS2: hash-grid NeuS SDF with progressive levels and occupancy-grid marching (DTU recipe).",
)
