"""LPIPS without network access.

torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` builds torchvision's AlexNet with ImageNet weights, which
downloads them on first use. We never let that happen at run time: LPIPS is built only when the weights are
already in torch's hub cache; otherwise metrics omit LPIPS and one warning says how to enable it.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import torch

ALEXNET_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"
_warned = False


def alexnet_weights_path() -> str:
    """Where torchvision looks for (and would download) the AlexNet weights LPIPS needs."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", ALEXNET_WEIGHTS_FILE)


def _warn_once(reason: str) -> None:
    global _warned
    if not _warned:
        warnings.warn(
            f"LPIPS is disabled: {reason}. Metrics will omit 'lpips'. To enable it, place torchvision's "
            f"{ALEXNET_WEIGHTS_FILE} at {alexnet_weights_path()} (nothing is downloaded at run time).",
            stacklevel=3,
        )
        _warned = True


def make_lpips() -> Optional[torch.nn.Module]:
    """An LPIPS (AlexNet) metric module if its pretrained weights are available offline, else ``None``."""
    if not os.path.isfile(alexnet_weights_path()):
        _warn_once(f"the AlexNet weights are not in the local cache ({alexnet_weights_path()})")
        return None
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(normalize=True)
    except Exception as error:  # a corrupt cache or a torchvision mismatch must not stop training
        _warn_once(f"building it failed ({type(error).__name__}: {error})")
        return None
