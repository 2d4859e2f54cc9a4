"""A tiny SDF model for the command-line tests: an analytic sphere (learnable radius and colour) rendered with a
soft silhouette, trained through nerfstudio's real Trainer on the tiny DTU scene (``neus-data`` dataparser).

``ToyDensityModel`` is the same without ``sdf``: the "not an SDF method" case.

The runs are saved under the registered method name ``vanilla-nerf``: ``eval_setup`` looks the saved method name up in
nerfstudio's registry (``all_methods[config.method_name]``, for the datamanager class, which is the same
``VanillaDataManager`` here), and a test-only model has no entry point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Type

import torch
import torch.nn.functional as F
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from torch import Tensor
from torch.nn import Parameter

from ng_methods.data.neus import NeuSDataParserConfig

DTU_TINY = Path(__file__).resolve().parents[1] / "data" / "dtu-scan65-tiny"
RADIUS = 0.5


@dataclass
class ToyDensityModelConfig(ModelConfig):
    """A sphere silhouette."""

    _target: Type = field(default_factory=lambda: ToyDensityModel)


class ToyDensityModel(Model):
    """A soft sphere silhouette of learnable radius and colour (no ``sdf``)."""

    def populate_modules(self) -> None:
        super().populate_modules()
        self.radius = Parameter(torch.tensor(RADIUS))
        self.color = Parameter(torch.tensor([0.2, 0.4, 0.6]))

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"fields": [self.radius, self.color]}

    def get_outputs(self, ray_bundle) -> Dict[str, Tensor]:
        origins, directions = ray_bundle.origins, F.normalize(ray_bundle.directions, dim=-1)
        along = (origins * directions).sum(-1, keepdim=True)
        miss_distance = (origins - along * directions).norm(dim=-1, keepdim=True)
        accumulation = torch.sigmoid((self.radius - miss_distance) * 200.0)
        return {"rgb": accumulation * self.color, "accumulation": accumulation, "depth": -along}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        return {"rgb_loss": F.mse_loss(outputs["rgb"], batch["image"][..., :3].to(self.device))}

    def get_image_metrics_and_images(self, outputs, batch):
        return {}, {}


@dataclass
class ToySdfModelConfig(ModelConfig):
    """A sphere SDF."""

    _target: Type = field(default_factory=lambda: ToySdfModel)


class ToySdfModel(ToyDensityModel):
    """The sphere as an SDF (negative inside) with a constant surface colour."""

    def sdf(self, positions: Tensor) -> Tensor:
        return positions.norm(dim=-1, keepdim=True) - self.radius

    def surface_colors(self, positions: Tensor) -> Tensor:
        return self.color.clamp(0, 1).expand(len(positions), 3)


def toy_config(model: ModelConfig, output_dir: Path, method_name: str = "vanilla-nerf") -> TrainerConfig:
    """Two CPU steps on the tiny DTU scene (all 8 views in both splits, as the papers' protocol)."""
    dataparser = NeuSDataParserConfig(data=DTU_TINY)
    return TrainerConfig(
        method_name=method_name,
        machine=MachineConfig(device_type="cpu"),
        output_dir=output_dir,
        max_num_iterations=2,
        steps_per_save=2,
        steps_per_eval_batch=10**9,
        steps_per_eval_image=10**9,
        steps_per_eval_all_images=10**9,
        save_only_latest_checkpoint=True,
        vis="tensorboard",
        viewer=ViewerConfig(quit_on_train_completion=True),
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(data=DTU_TINY, dataparser=dataparser, train_num_rays_per_batch=256,
                                                 eval_num_rays_per_batch=256),
            model=model,
        ),
        optimizers={"fields": {"optimizer": AdamOptimizerConfig(lr=1e-4), "scheduler": None}},
    )
