"""Dataparser specifications registered as ``nerfstudio.dataparser_configs`` entry points (see pyproject.toml).

nerfstudio loads these entry points while ``nerfstudio.data.datamanagers.base_datamanager`` is still being
imported, so this module and everything it imports must stay at dataparser level (no datamanager, pipeline or
model imports), or ``ns-train`` fails with a circular import.
"""

from __future__ import annotations

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from ng_methods.data.blender import NgBlenderDataParserConfig
from ng_methods.data.dnerf import NgDNeRFDataParserConfig
from ng_methods.data.llff import LLFFDataParserConfig
from ng_methods.data.nerfstudio_data import NgNerfstudioDataParserConfig
from ng_methods.data.neus import NeuSDataParserConfig
from ng_methods.data.nonrigid import NonRigidDataParserConfig
from ng_methods.data.phototourism import PhototourismDataParserConfig

__all__ = [
    "llff_dataparser", "ng_blender_dataparser", "ng_dnerf_dataparser", "ng_nerfstudio_dataparser",
    "nonrigid_dataparser",
    "ng_phototourism_dataparser", "neus_dataparser",
]

llff_dataparser = DataParserSpecification(
    config=LLFFDataParserConfig(),
    description=(
        "LLFF poses_bounds.npy scenes (forward-facing captures, photo collections) with optional masks; "
        "z-up world centred on the cameras' focus, LLFF bd_factor scaling, near/far in metadata."
    ),
)

ng_blender_dataparser = DataParserSpecification(
    config=NgBlenderDataParserConfig(),
    description="nerfstudio's Blender (NeRF-synthetic) dataparser with input validation at startup.",
)

ng_nerfstudio_dataparser = DataParserSpecification(
    config=NgNerfstudioDataParserConfig(),
    description=(
        "nerfstudio's transforms.json dataparser (nerfstudio, instant-ngp scenes) with input validation at startup; "
        "--skip-missing-images trains on the frames whose images exist."
    ),
)

ng_dnerf_dataparser = DataParserSpecification(
    config=NgDNeRFDataParserConfig(),
    description="nerfstudio's D-NeRF dataparser (Blender format with a 'time' per frame) with input validation.",
)

nonrigid_dataparser = DataParserSpecification(
    config=NonRigidDataParserConfig(),
    description=(
        "Non-Rigid NeRF monocular videos (precomputed.json + images/); time = frame index / (N - 1), "
        "evaluation on the file's i_test frames."
    ),
)

ng_phototourism_dataparser = DataParserSpecification(
    config=PhototourismDataParserConfig(),
    description=(
        "Phototourism scenes with NeRF-W's .tsv split (dense/images, dense/sparse, <scene>.tsv), Splatfacto-W's "
        "official conventions: poses scaled to [-1, 1] x 3, COLMAP points3D as seed points."
    ),
)

neus_dataparser = DataParserSpecification(
    config=NeuSDataParserConfig(),
    description=(
        "NeuS/IDR object scenes (image/, mask/, cameras_sphere.npz: DTU, BlendedMVS); cameras normalised into the "
        "unit sphere by scale_mat, object masks as metadata['fg_mask_filenames'] for a per-ray fg_mask."
    ),
)
