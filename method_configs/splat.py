"""``ng-splatfacto``: nerfstudio's Splatfacto recipe on the ng-methods splat base (trains on CPU as well).

The baseline for our Gaussian methods (``c3dgs``, ``splatfacto-wild``, the dynamic ones) and the CPU stand-in
for ``splatfacto`` in tests and benchmarks. The shared trainer block lives in :func:`splat_trainer_config`.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataParserConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from method_configs._common import splat_optimizers
from ng_methods.data.nerfstudio_data import NgNerfstudioDataParserConfig
from ng_methods.splat.model import NGSplatModelConfig

SPLATFACTO_STEPS = 30000


def splat_trainer_config(
    method_name: str,
    model: ModelConfig,
    max_steps: int,
    optimizers: Dict[str, Dict[str, object]],
    dataparser: Optional[DataParserConfig] = None,
    datamanager: Optional[FullImageDatamanagerConfig] = None,
) -> TrainerConfig:
    """A Splatfacto-style trainer: one full image per step, images cached on the training device."""
    if datamanager is None:
        datamanager = FullImageDatamanagerConfig(
            dataparser=dataparser or NgNerfstudioDataParserConfig(load_3D_points=True), cache_images_type="uint8"
        )
    return TrainerConfig(
        method_name=method_name,
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=1000,
        max_num_iterations=max_steps,
        mixed_precision=False,
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=VanillaPipelineConfig(datamanager=datamanager, model=model),
        optimizers=optimizers,
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


ng_splatfacto = MethodSpecification(
    config=splat_trainer_config(
        "ng-splatfacto", NGSplatModelConfig(), SPLATFACTO_STEPS, splat_optimizers(SPLATFACTO_STEPS)
    ),
    description="Splatfacto (3D Gaussian splatting) on the ng-methods splat base: gsplat on CUDA, PyTorch on CPU.",
)
