"""``splatfacto-wild``: Splatfacto-W (Gaussian splatting in the wild) on the ng-methods splat base.

Registered as ``splatfacto-wild`` because nerfstudio already lists ``splatfacto-w`` as an external method (the
official package). Defaults are the official ones (KevinXu02/splatfacto-w @119a3bf): 55k steps; the upstream
"light" variant is 30k (``--max-num-iterations 30000``). The default dataparser reads LLFF ``poses_bounds.npy``
photo collections such as ``wild/statue-of-liberty`` without their sky masks (the background model is what
explains the sky), and the datamanager seeds the Gaussians with the scene's ``sparse/0/points3D.bin`` mapped into
the poses' frame. Phototourism scenes with NeRF-W's ``.tsv`` split (the paper's data) use
``phototourism-data``. See ``docs/splatfacto-wild.md`` (its recipe card lists every setting).
"""

from __future__ import annotations

from pathlib import Path

from nerfstudio.plugins.types import MethodSpecification

from method_configs._common import splatfacto_wild_optimizers
from method_configs.splat import splat_trainer_config
from ng_methods.data.llff import LLFFDataParserConfig
from ng_methods.splatfacto_wild import SplatfactoWildModelConfig
from ng_methods.splatfacto_wild.datamanager import SplatfactoWildDatamanagerConfig

SPLATFACTO_WILD_STEPS = 55000
SPLATFACTO_WILD_LIGHT_STEPS = 30000


def _splatfacto_wild_config():
    config = splat_trainer_config(
        "splatfacto-wild",
        SplatfactoWildModelConfig(),
        SPLATFACTO_WILD_STEPS,
        splatfacto_wild_optimizers(SPLATFACTO_WILD_STEPS),
        datamanager=SplatfactoWildDatamanagerConfig(
            dataparser=LLFFDataParserConfig(data=Path("../shared/data/wild/statue-of-liberty"), use_masks=False),
            cache_images_type="uint8",
        ),
    )
    # Every eval image costs an appearance fit (eval_appearance_steps renders and backward passes), so evaluate
    # less often than splatfacto (100 / 1000 steps) to keep that overhead to a few percent of training.
    config.steps_per_eval_image = 1000
    config.steps_per_eval_all_images = 5000
    return config


splatfacto_wild = MethodSpecification(
    config=_splatfacto_wild_config(),
    description="Splatfacto-W: Gaussian splatting for photo collections (per-image appearance, SH sky, "
    "transient mask); half-image evaluation.",
)
