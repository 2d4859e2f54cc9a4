"""``gaussian-flow`` (Lin et al., CVPR 2024) and ``gaussian-flow-compressed`` (+ Light4GS-style significance pruning).

Released D-NeRF recipe (Linyou/D3DGS ``d3dgs_poly``): 30k steps, one image per step, random initialisation, white
background, L1 loss, DDDM orders 5/4/6 (position/rotation/colour DC). Only the position learning rate decays; the
trajectory learning rates are constant.
"""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from method_configs._common import constant_adam, splat_optimizers
from method_configs.splat import splat_trainer_config
from ng_methods.data.dnerf import NgDNeRFDataParserConfig
from ng_methods.gaussian_flow.model import GaussianFlowModelConfig

GAUSSIAN_FLOW_STEPS = 30000


def gaussian_flow_optimizers(max_steps: int):
    """3DGS learning rates plus constant ones for the trajectories (xyz 1.6e-4, rotation 5e-3, DC 2.5e-3, tau 1e-4)."""
    return splat_optimizers(
        max_steps,
        means_traj=constant_adam(1.6e-4),
        quats_traj=constant_adam(5e-3),
        features_dc_traj=constant_adam(2.5e-3),
        time_offsets=constant_adam(1e-4),
    )


def _gaussian_flow_trainer(method_name: str, model: GaussianFlowModelConfig):
    return splat_trainer_config(
        method_name, model, GAUSSIAN_FLOW_STEPS, gaussian_flow_optimizers(GAUSSIAN_FLOW_STEPS),
        dataparser=NgDNeRFDataParserConfig(alpha_color=None),  # RGBA kept: the model composites on its background
    )


gaussian_flow = MethodSpecification(
    config=_gaussian_flow_trainer("gaussian-flow", GaussianFlowModelConfig()),
    description="Gaussian-Flow: 4D Gaussians with per-Gaussian polynomial + Fourier trajectories (D-NeRF recipe).",
)

gaussian_flow_compressed = MethodSpecification(
    config=_gaussian_flow_trainer(
        "gaussian-flow-compressed", GaussianFlowModelConfig(significance_prune_at=(0.75, 0.9))
    ),
    description="Gaussian-Flow with Light4GS spatio-temporal significance pruning (40% twice); "
    "compact file via ng-dynamic-compress.",
)
