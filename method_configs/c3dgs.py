"""``c3dgs`` and ``c3dgs-synthetic``: Compact 3D Gaussian Representation (Lee et al., CVPR 2024).

Both follow the official code (maincold2/Compact-3DGS @c5d761f, INRIA 3DGS based); every value and its source is in
the recipe cards of ``docs/c3dgs.md`` (``tests/methods/test_recipe_cards.py`` checks them against these configs):
30k steps at full resolution, the original 3DGS densification (plain gradient >= 2e-4, 500-15k every 100, opacity
reset every 3k without a pause, prune opacity < 0.005 and world size > 0.1 x camera extent), black background, mask
lr 0.01 and lambda_m 5e-4, colour network (hash grid + MLP) at lr 0.01 with a 100-step warm-up and x0.33 at
5k/15k/25k, R-VQ in the last 1000 steps with the official in-place codebook update.

``c3dgs`` (real scenes) reads nerfstudio-data with every 8th image held out (the official ``--eval``, llffhold 8):
``ns-train c3dgs --data <scene>``.

``c3dgs-synthetic`` is the README's synthetic command (``--max_hashmap 16 --lambda_mask 4e-3 --mask_lr 1e-3
--net_lr 1e-3 --net_lr_step 25000``) on Blender scenes: 100k random points in [-1.3, 1.3]^3 and a colour-network
learning rate that never decays (the official parser turns ``--net_lr_step 25000`` into the milestones
'2','5','0','0','0', which ``MultiStepLR`` never reaches; see the card).
"""

from __future__ import annotations

from typing import Dict, Sequence

from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from method_configs._common import constant_adam, splat_optimizers
from method_configs.splat import splat_trainer_config
from ng_methods.c3dgs.model import C3DGSModelConfig
from ng_methods.c3dgs.schedule import WarmupMultiStepSchedulerConfig
from ng_methods.data.blender import NgBlenderDataParserConfig
from ng_methods.data.nerfstudio_data import NgNerfstudioDataParserConfig

C3DGS_STEPS = 30000
NET_LR_MILESTONES = (5000, 15000, 25000)
"""The official ``net_lr_step`` default (real scenes), for 30k steps; scaled for other step counts."""


def c3dgs_optimizers(max_steps: int, net_lr: float = 0.01, mask_lr: float = 0.01,
                     net_lr_milestones: Sequence[int] = NET_LR_MILESTONES) -> Dict[str, Dict[str, object]]:
    """3DGS learning rates for the Gaussians plus the mask and colour-network groups (the R-VQ codebooks take
    their official in-place update, ``C3DGSModelConfig.rvq_codebook_lr``)."""
    milestones = tuple(round(max_steps * step / C3DGS_STEPS) for step in net_lr_milestones)
    recipe = splat_optimizers(
        max_steps,
        mask_logits=constant_adam(mask_lr),
        color_field={
            "optimizer": AdamOptimizerConfig(lr=net_lr, eps=1e-15),
            "scheduler": WarmupMultiStepSchedulerConfig(warmup_steps=100, milestones=milestones, gamma=0.33),
        },
    )
    for unused in ("features_dc", "features_rest"):  # the colour comes from the colour field
        recipe.pop(unused)
    return recipe


def real_scene_datamanager() -> FullImageDatamanagerConfig:
    """nerfstudio-data with SfM points and every 8th image (sorted by name) held out, as 3DGS's ``--eval``."""
    return FullImageDatamanagerConfig(
        dataparser=NgNerfstudioDataParserConfig(load_3D_points=True, eval_mode="interval", eval_interval=8),
        cache_images_type="uint8",
    )


def synthetic_model() -> C3DGSModelConfig:
    """The README's synthetic values on the 3DGS Blender initialisation (100k random points in [-1.3, 1.3]^3)."""
    return C3DGSModelConfig(mask_weight=4e-3, hash_log2_size=16, random_init=True, num_random=100_000,
                            random_scale=2.6)


c3dgs = MethodSpecification(
    config=splat_trainer_config(
        "c3dgs", C3DGSModelConfig(), C3DGS_STEPS, c3dgs_optimizers(C3DGS_STEPS),
        datamanager=real_scene_datamanager(),
    ),
    description=(
        "C3DGS (Compact 3D Gaussians): learnable volume mask, hash-grid colour field, R-VQ of scale/rotation; "
        "real-scene settings (see c3dgs-synthetic for Blender scenes). Compact file: ng-c3dgs-export."
    ),
)

c3dgs_synthetic = MethodSpecification(
    config=splat_trainer_config(
        "c3dgs-synthetic",
        synthetic_model(),
        C3DGS_STEPS,
        c3dgs_optimizers(C3DGS_STEPS, net_lr=1e-3, mask_lr=1e-3, net_lr_milestones=()),
        datamanager=FullImageDatamanagerConfig(
            dataparser=NgBlenderDataParserConfig(alpha_color=None), cache_images_type="uint8"
        ),
    ),
    description=(
        "C3DGS with the official synthetic-scene command (lambda_m 4e-3, 2^16 hash, lr 1e-3, no net-lr decay, "
        "100k random points) on Blender data."
    ),
)
