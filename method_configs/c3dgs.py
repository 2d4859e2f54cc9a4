"""``c3dgs`` and ``c3dgs-synthetic``: Compact 3D Gaussian Representation (Lee et al., CVPR 2024).

Both follow the official code (maincold2/Compact-3DGS): 30k steps, 3DGS densification (500-15k every 100,
opacity reset every 3k, prune below opacity 0.005), mask lr 0.01 and lambda_m 5e-4, colour network (hash grid +
MLP) at lr 0.01 with a 100-step warm-up and x0.33 at 5k/15k/25k, R-VQ codebooks at lr 1e-4 in the last 1000 steps.

``c3dgs`` (real scenes) reads nerfstudio-data by default, like splatfacto: ``ns-train c3dgs --data <scene>``; for
Blender scenes add the ``ng-blender-data`` subcommand, or use ``c3dgs-synthetic``.

``c3dgs-synthetic`` switches to the official synthetic-scene values: lambda_m 4e-3, 2^16 hash entries per level,
lr 1e-3 for the mask and the colour network; it reads Blender scenes (``ng-blender-data``, RGBA kept, random
background) by default.
"""

from __future__ import annotations

from typing import Dict

from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from method_configs._common import constant_adam, splat_optimizers
from method_configs.splat import splat_trainer_config
from ng_methods.c3dgs.model import C3DGSModelConfig
from ng_methods.c3dgs.schedule import WarmupMultiStepSchedulerConfig
from ng_methods.data.blender import NgBlenderDataParserConfig

C3DGS_STEPS = 30000


def c3dgs_optimizers(max_steps: int, net_lr: float = 0.01, mask_lr: float = 0.01,
                     codebook_lr: float = 1e-4) -> Dict[str, Dict[str, object]]:
    """3DGS learning rates for the Gaussians plus the mask, colour-network and R-VQ codebook groups."""
    milestones = tuple(round(max_steps * fraction) for fraction in (5 / 30, 15 / 30, 25 / 30))
    recipe = splat_optimizers(
        max_steps,
        mask_logits=constant_adam(mask_lr),
        color_field={
            "optimizer": AdamOptimizerConfig(lr=net_lr, eps=1e-15),
            "scheduler": WarmupMultiStepSchedulerConfig(warmup_steps=100, milestones=milestones, gamma=0.33),
        },
        rvq_codebooks=constant_adam(codebook_lr),
    )
    for unused in ("features_dc", "features_rest"):  # the colour comes from the colour field
        recipe.pop(unused)
    return recipe


c3dgs = MethodSpecification(
    config=splat_trainer_config(
        "c3dgs", C3DGSModelConfig(), C3DGS_STEPS, c3dgs_optimizers(C3DGS_STEPS)
    ),
    description=(
        "C3DGS (Compact 3D Gaussians): learnable volume mask, hash-grid colour field, R-VQ of scale/rotation; "
        "real-scene settings (see c3dgs-synthetic for Blender scenes). Compact file: ng-c3dgs-export."
    ),
)

c3dgs_synthetic = MethodSpecification(
    config=splat_trainer_config(
        "c3dgs-synthetic",
        C3DGSModelConfig(mask_weight=4e-3, hash_log2_size=16),
        C3DGS_STEPS,
        c3dgs_optimizers(C3DGS_STEPS, net_lr=1e-3, mask_lr=1e-3),
        datamanager=FullImageDatamanagerConfig(
            dataparser=NgBlenderDataParserConfig(alpha_color=None), cache_images_type="uint8"
        ),
    ),
    description="C3DGS with the official synthetic-scene settings (lambda_m 4e-3, 2^16 hash, lr 1e-3) on Blender data.",
)
