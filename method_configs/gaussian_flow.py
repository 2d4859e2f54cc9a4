"""``gaussian-flow`` (Lin et al., CVPR 2024) and ``gaussian-flow-compressed`` (+ Light4GS significance pruning).

Both follow Gaussian-Flow's released lego recipe (Linyou/D3DGS ``d3dgs_poly`` @4030d65,
``arguments/dnerf/lego.py``): 10k steps, 8 images per step, 2000 grey random points, white background, L1 loss,
DDDM orders 2/1/2 plus an order-2 SH-AC trajectory, densification until 5k. :func:`gaussian_flow_config` builds
the config of any released scene recipe (:data:`ng_methods.gaussian_flow.recipes.RECIPES`), and
``GAUSSIAN_FLOW_PRESETS`` holds one ``MethodSpecification`` per scene, ready to be registered as
``gaussian-flow-<scene>`` entry points.
"""

from __future__ import annotations

from typing import Dict

from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from method_configs._common import adam_exponential_decay, constant_adam, splat_optimizers
from method_configs.splat import splat_trainer_config
from ng_methods.data.dnerf import NgDNeRFDataParserConfig
from ng_methods.dynamic.datamanager import MultiImageDatamanagerConfig
from ng_methods.gaussian_flow.model import GaussianFlowModelConfig
from ng_methods.gaussian_flow.recipes import RECIPES, GaussianFlowRecipe

LIGHT4GS_PRUNE_AT = (0.5, 0.6)
"""Light4GS prunes at 15k and 18k of its 30k fine-stage D-NeRF run (``train.py`` ``--prune_iterations``)."""


def gaussian_flow_optimizers(recipe: GaussianFlowRecipe) -> Dict[str, Dict[str, object]]:
    """Released learning rates. Positions decay 1.6e-4 -> 1.6e-6 over the run; every trajectory is constant (xyz
    1.6e-4, rotation = ``rotation_lr``, DC 2.5e-3, SH-AC 2.5e-3/20, tau 1e-4). The model multiplies the two
    position groups by the camera extent at the start of training (``spatial_lr_scale``)."""
    return splat_optimizers(
        recipe.steps,
        means=adam_exponential_decay(lr=1.6e-4, lr_final=1.6e-6, max_steps=recipe.steps),
        quats=constant_adam(recipe.rotation_lr),
        means_traj=constant_adam(1.6e-4),
        quats_traj=constant_adam(recipe.rotation_lr),
        features_dc_traj=constant_adam(2.5e-3),
        features_rest_traj=constant_adam(2.5e-3 / 20),
        time_offsets=constant_adam(1e-4),
    )


def gaussian_flow_model(recipe: GaussianFlowRecipe, **overrides) -> GaussianFlowModelConfig:
    """The model config of a released scene recipe."""
    return GaussianFlowModelConfig(
        position_order=recipe.position_order, rotation_order=recipe.rotation_order, color_order=recipe.color_order,
        sh_rest_order=recipe.sh_rest_order, time_scale=recipe.time_scale, time_shift=recipe.time_shift,
        time_noise=recipe.time_noise, time_noise_steps=recipe.steps, stop_split_at=recipe.densify_until,
        densify_grad_thresh=recipe.densify_grad, reset_alpha_every=recipe.opacity_reset_interval // 100,
        parameter_knn_weight=0.1 if recipe.knn_loss else 0.0, moving_loss_weight=1.0 if recipe.moving_loss else 0.0,
        **overrides,
    )


def gaussian_flow_config(scene: str = "lego", method_name: str = "gaussian-flow", **overrides) -> TrainerConfig:
    """Trainer config of Gaussian-Flow's released recipe for ``scene`` (a key of ``RECIPES``)."""
    recipe = RECIPES[scene]
    return splat_trainer_config(
        method_name, gaussian_flow_model(recipe, **overrides), recipe.steps, gaussian_flow_optimizers(recipe),
        datamanager=MultiImageDatamanagerConfig(
            dataparser=NgDNeRFDataParserConfig(alpha_color=None),  # RGBA kept: the model composites on white
            cache_images_type="uint8",
            images_per_step=recipe.images_per_step,
        ),
    )


gaussian_flow = MethodSpecification(
    config=gaussian_flow_config("lego"),
    description="Gaussian-Flow: 4D Gaussians with per-Gaussian polynomial + Fourier trajectories (released lego "
    "recipe; per-scene recipes in GAUSSIAN_FLOW_PRESETS).",
)

gaussian_flow_compressed = MethodSpecification(
    config=gaussian_flow_config(
        "lego", "gaussian-flow-compressed", significance_prune_at=LIGHT4GS_PRUNE_AT, significance_prune_fraction=0.4
    ),
    description="Gaussian-Flow with Light4GS spatio-temporal significance pruning (40% twice); "
    "compact file via ng-dynamic-compress.",
)

GAUSSIAN_FLOW_PRESETS = {
    scene: MethodSpecification(
        config=gaussian_flow_config(scene, f"gaussian-flow-{scene}"),
        description=f"Gaussian-Flow with the released D-NeRF recipe of {scene} (arguments/dnerf/{scene}.py).",
    )
    for scene in RECIPES
}
"""One method per released D-NeRF recipe (``gaussian-flow-<scene>``), for pyproject entry points."""

# Module-level names for entry points: gaussian-flow-<scene> = "method_configs.gaussian_flow:gaussian_flow_<scene>".
# (dict items cannot be named in an entry point)
gaussian_flow_default = GAUSSIAN_FLOW_PRESETS["default"]
gaussian_flow_lego = GAUSSIAN_FLOW_PRESETS["lego"]
gaussian_flow_bouncingballs = GAUSSIAN_FLOW_PRESETS["bouncingballs"]
gaussian_flow_hellwarrior = GAUSSIAN_FLOW_PRESETS["hellwarrior"]
gaussian_flow_hook = GAUSSIAN_FLOW_PRESETS["hook"]
gaussian_flow_jumpingjacks = GAUSSIAN_FLOW_PRESETS["jumpingjacks"]
gaussian_flow_mutant = GAUSSIAN_FLOW_PRESETS["mutant"]
gaussian_flow_standup = GAUSSIAN_FLOW_PRESETS["standup"]
gaussian_flow_trex = GAUSSIAN_FLOW_PRESETS["trex"]
