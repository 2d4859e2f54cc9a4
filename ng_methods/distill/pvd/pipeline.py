"""Pipeline that hands the datamanager's teacher to the PVD student (the model never loads it itself)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig


@dataclass
class PVDPipelineConfig(VanillaPipelineConfig):
    """Vanilla pipeline whose model is given the teacher loaded by the teacher datamanager."""

    _target: Type = field(default_factory=lambda: PVDPipeline)


class PVDPipeline(VanillaPipeline):
    """After building datamanager and model, attach ``datamanager.teacher`` (if one was loaded) to the model."""

    def __init__(self, config: PVDPipelineConfig, device: str, *args, **kwargs) -> None:
        super().__init__(config, device, *args, **kwargs)
        if self.test_mode == "val":  # training; ns-eval/ns-render ("test"/"inference") never load the teacher
            teacher = getattr(self.datamanager, "teacher", None)
            if teacher is not None:
                self.model.attach_teacher(teacher)

    def get_train_loss_dict(self, step: int):
        """As vanilla; also tells the datamanager how well the student matched the teacher on this pose."""
        model_outputs, loss_dict, metrics_dict = super().get_train_loss_dict(step)
        record = getattr(self.datamanager, "record_pose_psnr", None)
        if record is not None and "psnr_vs_teacher" in metrics_dict:
            record(float(metrics_dict["psnr_vs_teacher"]))
        return model_outputs, loss_dict, metrics_dict
