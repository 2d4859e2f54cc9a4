"""Load a trained nerfstudio model (any method, ours or nerfstudio's) as a frozen distillation teacher.

The teacher is rebuilt from its saved ``config.yml`` exactly as ``ns-eval`` does (``eval_utils.eval_setup``), with
three differences: every failure is one :class:`TeacherConfigError` naming the file, the latest checkpoint is
looked up next to the config (so a moved output folder still loads), and the pipeline lands on the student's
device with its model frozen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
import yaml
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import Pipeline
from torch import Tensor

from ng_methods.compat.checkpoints import allow_nerfstudio_checkpoints
from ng_methods.compat.lpips import nerfstudio_lpips_offline

__all__ = [
    "Teacher",
    "TeacherConfigError",
    "latest_checkpoint",
    "load_teacher",
    "read_teacher_config",
    "render_teacher_rays",
]

TEACHER_OUTPUTS = ("rgb", "accumulation", "depth")
"""The teacher outputs every student may use as targets."""

_CHECKPOINT_NAME = re.compile(r"step-(\d+)\.ckpt$")


class TeacherConfigError(ValueError):
    """The teacher cannot be used; raised before training starts. The message names the file and the problem."""


@dataclass
class Teacher:
    """A trained nerfstudio pipeline used as a frozen teacher."""

    config_path: Path
    """The teacher's saved ``config.yml``."""
    config: TrainerConfig
    """The teacher's training config, as saved."""
    pipeline: Pipeline
    """The teacher's pipeline with its latest checkpoint loaded (model frozen, in eval mode)."""

    @property
    def model(self) -> Model:
        """The frozen teacher model (``requires_grad_(False)``, ``eval()``)."""
        return self.pipeline.model

    @property
    def device(self) -> torch.device:
        """Where the teacher model lives."""
        return self.pipeline.model.device


def read_teacher_config(config_path: Union[Path, str]) -> TrainerConfig:
    """Read a teacher's ``config.yml`` (as ``ns-train`` saved it); :class:`TeacherConfigError` if unusable."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise TeacherConfigError(f"Teacher config {config_path} does not exist (expected the config.yml that "
                                 "ns-train saved next to the teacher's nerfstudio_models/ folder).")
    try:
        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except (yaml.YAMLError, OSError, UnicodeDecodeError, AttributeError, TypeError, ImportError) as error:
        raise TeacherConfigError(f"Teacher config {config_path} cannot be read as a nerfstudio config: {error}") \
            from error
    if not isinstance(config, TrainerConfig):
        raise TeacherConfigError(f"Teacher config {config_path} is not a nerfstudio training config (found "
                                 f"{type(config).__name__}); pass the config.yml that ns-train saved.")
    return config


def latest_checkpoint(config_path: Path, config: TrainerConfig) -> Path:
    """The newest ``step-*.ckpt`` next to ``config_path`` (or in the config's ``checkpoint_dir``)."""
    candidates = [config_path.parent / config.relative_model_dir, config.get_checkpoint_dir()]
    for directory in candidates:
        if not directory.is_dir():
            continue
        steps = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _CHECKPOINT_NAME.search(p.name))]
        if steps:
            return max(steps)[1]
    raise TeacherConfigError(f"Teacher config {config_path}: no checkpoint (step-*.ckpt) in "
                             f"{' or '.join(str(c) for c in dict.fromkeys(candidates))}; train the teacher first.")


def _check_data(config_path: Path, config: TrainerConfig) -> None:
    datamanager = config.pipeline.datamanager
    data = getattr(datamanager, "data", None) or getattr(getattr(datamanager, "dataparser", None), "data", None)
    if data is not None and not Path(data).exists():
        raise TeacherConfigError(f"Teacher config {config_path}: its data folder {data} is missing (the teacher's "
                                 "scene box and cameras are rebuilt from it).")


def _build_pipeline(config_path: Path, config: TrainerConfig, device: torch.device) -> Pipeline:
    _check_data(config_path, config)
    # "inference" sets up neither dataloader: only the dataparser outputs the model is built from.
    try:
        with nerfstudio_lpips_offline():  # a teacher renders; it never scores images
            pipeline = config.pipeline.setup(device=device, test_mode="inference")
    except Exception as error:  # the dataparser's own message says which of the teacher's files is bad
        raise TeacherConfigError(f"Teacher config {config_path}: its pipeline cannot be built: {error}") from error
    checkpoint = latest_checkpoint(config_path, config)
    allow_nerfstudio_checkpoints()
    try:
        state = torch.load(checkpoint, map_location="cpu")
        pipeline.load_pipeline(state["pipeline"], state["step"])
    except Exception as error:
        raise TeacherConfigError(f"Teacher checkpoint {checkpoint} cannot be loaded: {error}") from error
    return pipeline


def load_teacher(config_path: Union[Path, str], device: Union[torch.device, str]) -> Teacher:
    """Load a trained model from its ``config.yml`` and latest checkpoint, frozen, on ``device``.

    Raises:
        TeacherConfigError: the config is missing or not a nerfstudio config, its checkpoint folder has no
            checkpoint, its data folder is missing, or the model cannot render rays (e.g. a Gaussian splat).
    """
    config_path = Path(config_path)
    config = read_teacher_config(config_path)
    pipeline = _build_pipeline(config_path, config, torch.device(device))
    pipeline.to(device)
    pipeline.eval()
    pipeline.requires_grad_(False)
    teacher = Teacher(config_path=config_path, config=config, pipeline=pipeline)
    _check_renders_rays(teacher)
    return teacher


def _check_renders_rays(teacher: Teacher) -> None:
    bundle = teacher.pipeline.datamanager.train_dataparser_outputs.cameras[:1].to(teacher.device).generate_rays(
        camera_indices=0, coords=torch.tensor([[0.5, 0.5]], device=teacher.device))
    try:
        render_teacher_rays(teacher, bundle.flatten())
    except Exception as error:
        raise TeacherConfigError(f"Teacher config {teacher.config_path}: the {teacher.config.method_name} model "
                                 f"cannot render a RayBundle ({type(error).__name__}: {error}); distillation needs "
                                 "a ray-based teacher (a NeRF, not a Gaussian splat).") from error


@torch.no_grad()
def render_teacher_rays(teacher: Teacher, ray_bundle: RayBundle, chunk_size: int = 8192) -> Dict[str, Tensor]:
    """Render the frozen teacher on a flat bundle of ``n`` rays, ``chunk_size`` rays at a time.

    Returns:
        ``"rgb"`` [n, 3], ``"accumulation"`` [n, 1] and ``"depth"`` [n, 1], on the bundle's device.
    """
    model = teacher.model
    bundle = ray_bundle.flatten().to(model.device)
    chunks: Dict[str, List[Tensor]] = {name: [] for name in TEACHER_OUTPUTS}
    for start in range(0, len(bundle), chunk_size):
        outputs = model.forward(ray_bundle=bundle[start : start + chunk_size])
        for name in TEACHER_OUTPUTS:
            chunks[name].append(_output(outputs, name))
    device = ray_bundle.origins.device
    if len(bundle) == 0:
        return {name: torch.zeros(0, 3 if name == "rgb" else 1, device=device) for name in TEACHER_OUTPUTS}
    return {name: torch.cat(values).to(device) for name, values in chunks.items()}


def _output(outputs: Dict[str, Tensor], name: str) -> Float[Tensor, "n c"]:
    value: Optional[Tensor] = outputs.get(name)
    if value is None and name == "depth":
        value = outputs.get("expected_depth")
    if value is None:
        raise KeyError(f"teacher model outputs have no '{name}' (got {sorted(outputs)})")
    return value.reshape(value.shape[0], -1).float()
