"""``ng-dynamic-compress``: score, optionally prune and store a trained splat model (static or dynamic) compactly.

Example:
    ng-dynamic-compress --load-config outputs/lego/gaussian-flow/<run>/config.yml --output lego.ngd
    ng-dynamic-compress --load-config ... --output lego.ngd --prune-fraction 0.4 --prune-rounds 2
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import tyro
from nerfstudio.utils.rich_utils import CONSOLE

from ng_methods.compression.dynamic_codec import DynamicCodecConfig, save_compact, uncompressed_bytes
from ng_methods.compression.significance import least_significant, prune_gaussians, significance_scores
from ng_methods.splat.loading import load_trained_model
from ng_methods.splat.model import NGSplatModel

MB = 1024 * 1024


@dataclass
class DynamicCompress:
    """Load a trained run, optionally prune by spatio-temporal significance, write the compact file."""

    load_config: Path
    """The run's ``config.yml``."""
    output: Path
    """Where to write the compact file."""
    prune_fraction: float = 0.0
    """Fraction of the least significant Gaussians removed per round (Light4GS: 0.4; 0 keeps all)."""
    prune_rounds: int = 1
    """Pruning rounds (scores are recomputed after each)."""
    codec: DynamicCodecConfig = field(default_factory=DynamicCodecConfig)
    """Quantisation steps."""
    report: Optional[Path] = None
    """Optional JSON file for the numbers printed at the end."""

    def main(self) -> dict:
        pipeline, model = load_trained_model(self.load_config, NGSplatModel)
        count_before = int(model.gauss_params["means"].shape[0])
        bytes_before = uncompressed_bytes(model)
        if self.prune_fraction > 0:
            cameras = pipeline.datamanager.train_dataset.cameras
            for _ in range(self.prune_rounds):
                scores = significance_scores(model, cameras)
                prune_gaussians(model, {}, least_significant(scores, self.prune_fraction))
        size = save_compact(model, self.output, self.codec)
        numbers = {
            "gaussians_before": count_before, "gaussians_after": int(model.gauss_params["means"].shape[0]),
            "mb_before": bytes_before / MB, "mb_after": size / MB, "ratio": bytes_before / max(size, 1),
        }
        CONSOLE.log(
            f"{numbers['gaussians_before']} -> {numbers['gaussians_after']} Gaussians, "
            f"{numbers['mb_before']:.3f} MB (float32 parameters) -> {numbers['mb_after']:.3f} MB "
            f"({numbers['ratio']:.1f}x) in {self.output}"
        )
        if self.report is not None:
            self.report.write_text(json.dumps(numbers, indent=1))
        return numbers


def entrypoint() -> None:
    """Console script ``ng-dynamic-compress``."""
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(tyro.conf.FlagConversionOff[DynamicCompress]).main()


if __name__ == "__main__":
    entrypoint()
