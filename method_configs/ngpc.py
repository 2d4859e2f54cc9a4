"""NGPC NeRFs: Instant-NGP-style methods on the three encodings profiled in "Hardware Acceleration of Neural
Graphics" (Mubarik et al., ISCA 2023): multi-resolution hash grid, multi-resolution dense grid, low-resolution
dense grid. Each comes as a bounded preset (Blender-style object scenes) and an ``-unbounded`` preset (real
captures: scene contraction, a 4-level occupancy grid and cone-angle marching)."""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.dynamic_batch import DynamicBatchPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from method_configs._common import adam_exponential_decay
from ng_methods.data.blender import NgBlenderDataParserConfig
from ng_methods.data.llff import LLFFDataParserConfig
from ng_methods.ngpc.field import EncodingName, NGPCFieldConfig
from ng_methods.ngpc.model import NGPCModelConfig
from ng_methods.ngpc.sampler import OccupancySamplerConfig

MAX_STEPS = 30000

_DESCRIPTIONS = {
    "hashgrid": "multi-resolution hash grid (L=16, F=2, T=2^19, N_min=16, N_max=2048*bound)",
    "densegrid": "multi-resolution dense grid (L=8, F=2, N_min=16, N_max=128)",
    "lowres-densegrid": "low-resolution dense grid (one 128^3 level, F=4)",
}


def ngpc_trainer_config(encoding: EncodingName, unbounded: bool) -> TrainerConfig:
    """The full training recipe of one NGPC method (Instant-NGP's: 2^18 samples a step, Adam 1e-2, eps 1e-15)."""
    suffix = "-unbounded" if unbounded else ""
    if unbounded:
        dataparser = LLFFDataParserConfig()
        sampler = OccupancySamplerConfig(grid_levels=4, cone_angle=1.0 / 256.0, alpha_thre=0.01)
    else:
        # Keep the alpha channel so the model can train on random backgrounds (Instant-NGP).
        dataparser = NgBlenderDataParserConfig(alpha_color=None)
        sampler = OccupancySamplerConfig(grid_levels=1, cone_angle=0.0, alpha_thre=0.0)
    return TrainerConfig(
        method_name=f"ngpc-{encoding}{suffix}",
        steps_per_eval_batch=500,
        steps_per_eval_image=2000,
        steps_per_save=2000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=True,
        # Train where we can: the pure-PyTorch path makes every method run on CPU too.
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=DynamicBatchPipelineConfig(
            target_num_samples=1 << 18,
            max_num_samples_per_ray=1024,
            datamanager=VanillaDataManagerConfig(
                dataparser=dataparser, train_num_rays_per_batch=4096, eval_num_rays_per_batch=4096
            ),
            model=NGPCModelConfig(
                field=NGPCFieldConfig(encoding=encoding),
                sampler=sampler,
                scene_contraction=unbounded,
                background_color="random" if not unbounded else "white",
            ),
        ),
        optimizers={
            "grid": adam_exponential_decay(lr=1e-2, lr_final=1e-4, max_steps=MAX_STEPS),
            # Instant-NGP applies a small L2 penalty to the MLP weights only.
            "mlp": adam_exponential_decay(lr=1e-2, lr_final=1e-4, max_steps=MAX_STEPS, weight_decay=1e-6),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 12),
        vis="viewer",
    )


def _spec(encoding: EncodingName, unbounded: bool) -> MethodSpecification:
    scene = "unbounded real captures (scene contraction)" if unbounded else "bounded object scenes (Blender)"
    return MethodSpecification(
        config=ngpc_trainer_config(encoding, unbounded),
        description=f"NGPC NeRF, {_DESCRIPTIONS[encoding]}; {scene}.",
    )


ngpc_hashgrid = _spec("hashgrid", unbounded=False)
ngpc_densegrid = _spec("densegrid", unbounded=False)
ngpc_lowres_densegrid = _spec("lowres-densegrid", unbounded=False)
ngpc_hashgrid_unbounded = _spec("hashgrid", unbounded=True)
ngpc_densegrid_unbounded = _spec("densegrid", unbounded=True)
ngpc_lowres_densegrid_unbounded = _spec("lowres-densegrid", unbounded=True)
