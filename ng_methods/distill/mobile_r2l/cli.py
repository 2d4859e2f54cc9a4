"""``ng-export-onnx``: export a trained MobileR2L student (its saved ``config.yml``) to ONNX, checked by onnxruntime.

Example::

    ng-export-onnx --load-config outputs/fern/mobile-r2l/<run>/config.yml --output-path student.onnx

The input resolution defaults to the first training camera's (e.g. LLFF 1008x756 -> a 84x63 ray image); the
checkpoint is the latest one next to the config. The check input is the real embedded ray image of that camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import tyro
import yaml
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import Pipeline
from nerfstudio.utils.eval_utils import eval_load_checkpoint

from ng_methods.compat.checkpoints import allow_nerfstudio_checkpoints
from ng_methods.distill.mobile_r2l.model import MobileR2LModel
from ng_methods.distill.mobile_r2l.onnx_export import DEFAULT_TOLERANCE, ExportReport, Exporter, export_network

__all__ = ["ExportOnnx", "entrypoint", "load_student"]


@dataclass
class ExportOnnx:
    """Export a trained MobileR2L student network to ONNX and check it with onnxruntime."""

    load_config: Path
    """The student's ``config.yml`` (saved by ns-train)."""
    output_path: Path = Path("student.onnx")
    """Where to write the ONNX file."""
    height: Optional[int] = None
    """Output image height (None: the first training camera's). The ray image is ceil(height / factor) high."""
    width: Optional[int] = None
    """Output image width (None: the first training camera's)."""
    include_embedder: bool = False
    """Put the positional embedding in the graph (input: sampled points [1, 3n, h, w]) instead of taking the
    embedded ray image [1, 312, h, w]."""
    snap_gelu: bool = False
    """Also write ``<name>_SnapGELU.onnx`` for SnapML (ReLU-exported, nodes renamed GeluSnap; official export)."""
    exporter: Exporter = "auto"
    """'dynamo' (needs onnxscript), 'torchscript', or 'auto' (dynamo when onnxscript is installed)."""
    opset: Optional[int] = None
    """ONNX opset (None: the exporter's default; 17 for the TorchScript exporter)."""
    tolerance: float = DEFAULT_TOLERANCE
    """Fail when onnxruntime's output differs from PyTorch's by more than this (max abs, RGB in [0, 1])."""
    skip_check: bool = False
    """Do not run onnxruntime on the export."""

    def main(self) -> ExportReport:
        """Load, export, check; prints the max abs difference and returns the report."""
        pipeline = load_student(self.load_config)
        model = pipeline.model
        camera = pipeline.datamanager.train_dataset.cameras[0:1]
        if self.height is not None or self.width is not None:  # same field of view at another resolution
            old_h, old_w = int(camera.height), int(camera.width)
            new_h, new_w = self.height or old_h, self.width or old_w
            camera.fx[:], camera.cx[:] = camera.fx * new_w / old_w, camera.cx * new_w / old_w
            camera.fy[:], camera.cy[:] = camera.fy * new_h / old_h, camera.cy * new_h / old_h
            camera.height[:], camera.width[:] = new_h, new_w
        model.eval()
        with torch.no_grad():
            embedded, height, width = model.embedded_ray_image(camera)
        example = embedded
        if self.include_embedder:  # the raw coordinates are the last of every 2L+1 channels
            example = embedded[:, 2 * model.config.frequencies:: 2 * model.config.frequencies + 1]
        report = export_network(
            model.network, example, self.output_path, frequencies=model.config.frequencies,
            include_embedder=self.include_embedder, exporter=self.exporter, opset=self.opset,
            check=not self.skip_check, tolerance=self.tolerance, snap_gelu=self.snap_gelu,
        )
        factor = model.network.spec.sr_factor
        print(f"Wrote {report.path}: input {report.input_shape} -> output {report.output_shape} "
              f"({height}x{width} after cropping the {math.ceil(height / factor) * factor}x"
              f"{math.ceil(width / factor) * factor} render; exporter {report.exporter})")
        if report.snap_gelu_path is not None:
            print(f"Wrote {report.snap_gelu_path} (GeluSnap activations for SnapML)")
        return report


def load_student(config_path: Path) -> Pipeline:
    """The student pipeline from its ``config.yml`` with its latest checkpoint, on CPU, without the teacher."""
    allow_nerfstudio_checkpoints()
    if not Path(config_path).is_file():
        raise FileNotFoundError(f"Student config {config_path} does not exist (pass the config.yml saved by ns-train)")
    config = yaml.load(Path(config_path).read_text(), Loader=yaml.Loader)
    if not isinstance(config, TrainerConfig):
        raise ValueError(f"{config_path} is not a nerfstudio training config")
    config.load_dir = config.get_checkpoint_dir()
    pipeline = config.pipeline.setup(device="cpu", test_mode="inference")
    if not isinstance(pipeline.model, MobileR2LModel):
        raise ValueError(f"{config_path} is a {type(pipeline.model).__name__}, not a MobileR2L student")
    pipeline.eval()
    eval_load_checkpoint(config, pipeline)
    return pipeline


def entrypoint() -> None:
    """Console script ``ng-export-onnx``."""
    tyro.cli(ExportOnnx).main()


if __name__ == "__main__":
    entrypoint()
