"""Per-ray object masks for NeuS-style training: ``batch["fg_mask"]`` without mask-restricted pixel sampling.

nerfstudio's own ``mask`` key (from ``DataparserOutputs.mask_filenames``) makes the pixel sampler draw pixels only
where the mask is 1. NeuS (and NeuS2) instead sample every pixel and add a mask loss on the rendered accumulation,
so the object mask must travel as ordinary per-pixel data: :class:`NeuSDataset` adds ``"fg_mask"`` [H, W, 1]
(float32, 1 = object, 0 = background) to every item, read from ``metadata["fg_mask_filenames"]`` (written by
``neus-data``, :mod:`ng_methods.data.neus`). nerfstudio's pixel sampler indexes every key of an image batch with
the sampled pixels, so training batches carry ``fg_mask`` [num_rays, 1] aligned with ``image``, and full-image
evaluation batches carry it [H, W, 1]. Like ``image``, it stays on the CPU (models move it with the image).

This module imports datamanager code: keep it out of ``ng_methods.data.specs`` (circular import, see the plugin
notes, pitfall 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Type

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image
from torch import Tensor

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset

from ng_methods.data.neus import NeuSDataParserConfig

__all__ = ["FG_MASK_KEY", "NeuSDataset", "NeuSDataManagerConfig", "load_fg_mask"]

FG_MASK_KEY = "fg_mask"
"""Batch key of the per-pixel object mask."""


def load_fg_mask(path: Path, height: int, width: int) -> Float[Tensor, "height width 1"]:
    """Binary object mask [height, width, 1] (1 where the grey value is >= 128) from a mask image; resized with
    nearest neighbour when its size differs (the dataset's ``scale_factor``), so it stays binary."""
    with Image.open(path) as im:
        grey = im.convert("L")
        if grey.size != (width, height):
            grey = grey.resize((width, height), resample=Image.Resampling.NEAREST)
        values = np.asarray(grey)
    return torch.from_numpy((values >= 128).astype(np.float32))[..., None]


class NeuSDataset(InputDataset):
    """An ``InputDataset`` whose items also hold ``"fg_mask"`` [H, W, 1] (float32 in {0, 1}), from
    ``metadata["fg_mask_filenames"]`` (one per image, same order)."""

    exclude_batch_keys_from_device: List[str] = InputDataset.exclude_batch_keys_from_device + [FG_MASK_KEY]

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        filenames = self.metadata.get("fg_mask_filenames")
        if filenames is None or len(filenames) != len(self):
            raise ValueError(
                "NeuSDataset needs metadata['fg_mask_filenames'] with one mask per image (from the neus-data "
                f"dataparser); got {None if filenames is None else len(filenames)} for {len(self)} images"
            )
        self.fg_mask_filenames: List[Path] = [Path(p) for p in filenames]

    def get_metadata(self, data: Dict) -> Dict:
        height, width = data["image"].shape[:2]
        return {FG_MASK_KEY: load_fg_mask(self.fg_mask_filenames[data["image_idx"]], height, width)}


@dataclass
class NeuSDataManagerConfig(VanillaDataManagerConfig):
    """nerfstudio's ``VanillaDataManager`` over :class:`NeuSDataset` (batches carry ``fg_mask``), reading
    ``neus-data`` scenes by default. Pixels are sampled uniformly over whole images, as in NeuS."""

    _target: Type = field(default_factory=lambda: VanillaDataManager[NeuSDataset])
    """target class to instantiate"""
    dataparser: NeuSDataParserConfig = field(default_factory=NeuSDataParserConfig)
    """The scene's dataparser (``neus-data``)."""
