"""Console scripts: ``ng-c3dgs-export`` (trained run -> compact file, optionally evaluated after decoding) and
``ng-c3dgs-to-ply`` (compact -> .ply)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import tyro
from nerfstudio.utils.rich_utils import CONSOLE


@dataclass
class ExportCompact:
    """Write the compact C3DGS file of a trained run (quantised attributes + entropy coding)."""

    load_config: Path
    """The run's ``config.yml`` (as for ``ns-export``)."""
    output_path: Path = Path("c3dgs.ngc")
    """Where to write the compact file."""
    hash_prune_threshold: Optional[float] = None
    """Store hash-table values with ``|v|`` below this as zero; None uses the model's ``storage_hash_prune`` (0.1)."""
    eval_output_path: Optional[Path] = None
    """Also evaluate the *decoded* file on the run's test split (PSNR/SSIM/LPIPS, as ``ns-eval``) and write the
    metrics with the file size here (JSON): the paper's protocol for the quality next to its MB (+PP rows)."""

    def main(self) -> None:
        from ng_methods.c3dgs.compact import write_compact
        from ng_methods.c3dgs.model import C3DGSModel
        from ng_methods.splat.loading import load_trained_model

        _, model = load_trained_model(self.load_config, C3DGSModel)
        size = write_compact(model, self.output_path, self.hash_prune_threshold)
        kept = int(model.gauss_params["mask_logits"].sigmoid().gt(model.config.mask_threshold).sum())
        CONSOLE.print(f"Wrote {self.output_path}: {size / 1e6:.3f} MB, {kept} Gaussians")
        if self.eval_output_path is not None:
            results = evaluate_compact(self.load_config, self.output_path)
            self.eval_output_path.parent.mkdir(parents=True, exist_ok=True)
            self.eval_output_path.write_text(json.dumps(results, indent=2))
            CONSOLE.print(f"Decoded-file metrics {results['results']} -> {self.eval_output_path}")


def evaluate_compact(load_config: Path, compact_path: Path) -> Dict[str, object]:
    """``ns-eval``'s metrics of the decoded compact file: the run's pipeline (test split) with its model replaced
    by :func:`~ng_methods.c3dgs.compact.load_compact` of ``compact_path``."""
    from nerfstudio.utils.eval_utils import eval_setup

    import ng_methods  # noqa: F401  (checkpoint loading on torch >= 2.6)
    from ng_methods.c3dgs.compact import load_compact

    config, pipeline, checkpoint, _ = eval_setup(load_config, test_mode="test")
    decoded = load_compact(compact_path, device=pipeline.device)
    pipeline._model = decoded  # VanillaPipeline.model reads _model
    metrics = pipeline.get_average_eval_image_metrics(output_path=None, get_std=True)
    return {"experiment_name": config.experiment_name, "method_name": config.method_name,
            "checkpoint": str(checkpoint), "compact_file": str(compact_path),
            "compact_mb": Path(compact_path).stat().st_size / 1e6, "num_gaussians": decoded.num_points,
            "results": {key: float(value) for key, value in metrics.items()}}


@dataclass
class CompactToPly:
    """Convert a compact C3DGS file into a standard 3DGS ``.ply`` (colour field baked into degree-3 SH)."""

    input_path: tyro.conf.Positional[Path]
    """The compact file written by ``ng-c3dgs-export``."""
    output_path: Path = Path("splat.ply")
    """Where to write the ``.ply``."""

    def main(self) -> None:
        from ng_methods.c3dgs.compact import compact_to_ply

        count = compact_to_ply(self.input_path, self.output_path)
        CONSOLE.print(f"Wrote {self.output_path}: {count} Gaussians")


def export_entrypoint() -> None:
    """``ng-c3dgs-export``."""
    tyro.cli(ExportCompact).main()


def to_ply_entrypoint() -> None:
    """``ng-c3dgs-to-ply``."""
    tyro.cli(CompactToPly).main()
