"""Time-aware (dynamic-scene) methods: ``4d-rotor-gs``.

``4d-rotor-gs`` trains on D-NeRF scenes by default (``ng-dnerf-data`` with RGBA kept, composited over the model's
black background) at 400 px (``camera_res_scale_factor = 0.5``, the official D-NeRF protocol), 3 training images
per step (``MultiImageDatamanager``); use ``nonrigid-data`` (or any dataparser that fills ``Cameras.times``) for
other videos, with ``--pipeline.datamanager.camera-res-scale-factor 1`` for full resolution.
"""

from __future__ import annotations

from typing import Dict

from nerfstudio.plugins.types import MethodSpecification

from method_configs._common import adam_exponential_decay, constant_adam, splat_optimizers
from method_configs.splat import splat_trainer_config
from ng_methods.data.dnerf import NgDNeRFDataParserConfig
from ng_methods.dynamic.datamanager import MultiImageDatamanagerConfig
from ng_methods.rotor4d.model import Rotor4DGSModelConfig

ROTOR4D_STEPS = 20000
ROTOR4D_LR_DECAY_STEPS = 30000
"""The official schedules decay over 30k steps although training stops at 20k (kept as is)."""
ROTOR4D_IMAGES_PER_STEP = 3
"""Cameras rendered per optimisation step (official D-NeRF batch)."""
DNERF_RESOLUTION_SCALE = 0.5
"""The official D-NeRF parser divides the intrinsics by ``downsample = 2`` and the model resizes the ground truth to
match: training and evaluation at 400 px from the 800 px originals."""


def rotor4d_optimizers(max_steps: int = ROTOR4D_LR_DECAY_STEPS) -> Dict[str, Dict[str, object]]:
    """Official D-NeRF learning rates: means 8e-4 -> 8e-6, times 1.6e-4 -> 1.6e-6, the rest 3DGS defaults."""
    optimizers = splat_optimizers(
        max_steps,
        means=adam_exponential_decay(lr=8e-4, lr_final=8e-6, max_steps=max_steps),
        times=adam_exponential_decay(lr=1.6e-4, lr_final=1.6e-6, max_steps=max_steps),
        scales_t=constant_adam(0.005),
        rotors=constant_adam(0.001),
    )
    optimizers.pop("quats")  # 4D Gaussians are oriented by rotors
    return optimizers


rotor4d_gs = MethodSpecification(
    config=splat_trainer_config(
        "4d-rotor-gs",
        Rotor4DGSModelConfig(),
        ROTOR4D_STEPS,
        rotor4d_optimizers(),
        datamanager=MultiImageDatamanagerConfig(
            dataparser=NgDNeRFDataParserConfig(alpha_color=None),
            cache_images_type="uint8",
            images_per_step=ROTOR4D_IMAGES_PER_STEP,
            camera_res_scale_factor=DNERF_RESOLUTION_SCALE,
        ),
    ),
    description="4D Gaussian splatting with 4D rotors (Duan et al. 2024): time-sliced 4D Gaussians, D-NeRF setup.",
)
