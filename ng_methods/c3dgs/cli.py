"""Console scripts: ``ng-c3dgs-export`` (trained run -> compact file) and ``ng-c3dgs-to-ply`` (compact -> .ply)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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

    def main(self) -> None:
        from ng_methods.c3dgs.compact import write_compact
        from ng_methods.c3dgs.model import C3DGSModel
        from ng_methods.splat.loading import load_trained_model

        _, model = load_trained_model(self.load_config, C3DGSModel)
        size = write_compact(model, self.output_path, self.hash_prune_threshold)
        kept = int(model.gauss_params["mask_logits"].sigmoid().gt(model.config.mask_threshold).sum())
        CONSOLE.print(f"Wrote {self.output_path}: {size / 1e6:.3f} MB, {kept} Gaussians")


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
