"""LPIPS without network access, with AlexNet (``lpips``) and VGG (``lpips_vgg``) backbones.

torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` builds torchvision's AlexNet or VGG16 with ImageNet weights,
which downloads them on first use (its LPIPS linear heads ship inside torchmetrics). We never let that happen at run
time: each backbone is built only when its weights are already in torch's hub cache; a missing one is left out of
the metrics with one warning saying where to put it. Papers differ in the backbone they report (3DGS-family code:
VGG; nerfstudio: AlexNet), so both are reported when both are available.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Dict, Iterator, Optional
from unittest import mock

import torch
from torch import Tensor

ALEXNET_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"
VGG16_WEIGHTS_FILE = "vgg16-397923af.pth"
# metric name -> (torchmetrics net_type, torchvision weights file)
BACKBONES = {"lpips": ("alex", ALEXNET_WEIGHTS_FILE), "lpips_vgg": ("vgg", VGG16_WEIGHTS_FILE)}
_warned: set = set()


def weights_path(file_name: str) -> str:
    """Where torchvision looks for (and would download) a backbone's ImageNet weights."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", file_name)


def alexnet_weights_path() -> str:
    """Where torchvision looks for the AlexNet weights that ``lpips`` needs."""
    return weights_path(ALEXNET_WEIGHTS_FILE)


def _warn_once(metric: str, reason: str) -> None:
    if metric not in _warned:
        file_name = BACKBONES[metric][1]
        warnings.warn(
            f"LPIPS ({metric}) is disabled: {reason}. Metrics will omit '{metric}'. To enable it, place "
            f"torchvision's {file_name} at {weights_path(file_name)} (nothing is downloaded at run time).",
            stacklevel=3,
        )
        _warned.add(metric)


class OfflineLPIPS(torch.nn.Module):
    """The LPIPS metrics whose backbones were available offline; ``forward`` returns ``{metric name: score}``.

    Example:
        >>> lpips = make_lpips()  # None when no backbone is cached
        >>> scores = lpips(pred_nchw, target_nchw) if lpips is not None else {}  # e.g. {"lpips": tensor(0.12)}
    """

    def __init__(self, metrics: Dict[str, torch.nn.Module]):
        super().__init__()
        self.metrics = torch.nn.ModuleDict(metrics)

    def forward(self, pred: Tensor, target: Tensor) -> Dict[str, Tensor]:
        """``pred``, ``target``: ``[B, 3, H, W]`` in [0, 1]."""
        return {name: metric(pred, target) for name, metric in self.metrics.items()}


def _build(metric: str) -> Optional[torch.nn.Module]:
    net_type, file_name = BACKBONES[metric]
    if not os.path.isfile(weights_path(file_name)):
        _warn_once(metric, f"the {net_type} weights are not in the local cache ({weights_path(file_name)})")
        return None
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(net_type=net_type, normalize=True)
    except Exception as error:  # a corrupt cache or a torchvision mismatch must not stop training
        _warn_once(metric, f"building it failed ({type(error).__name__}: {error})")
        return None


def make_lpips() -> Optional[OfflineLPIPS]:
    """The LPIPS metrics (AlexNet ``lpips``, VGG ``lpips_vgg``) whose weights are cached, or None if neither is."""
    built = {metric: _build(metric) for metric in BACKBONES}
    available = {metric: module for metric, module in built.items() if module is not None}
    return OfflineLPIPS(available) if available else None


class _NaNLPIPS(torch.nn.Module):
    """Stands in for torchmetrics' LPIPS while its AlexNet weights are missing: scores NaN, downloads nothing."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, *args, **kwargs) -> Tensor:
        return torch.tensor(float("nan"))


@contextlib.contextmanager
def nerfstudio_lpips_offline() -> Iterator[None]:
    """Build nerfstudio models (``nerfacto``, ``neus-facto``, ``instant-ngp``, ...) without an LPIPS download.

    Their ``populate_modules`` builds torchmetrics' LPIPS, which downloads AlexNet's weights when they are not in
    the hub cache. Within this context, and only while the weights are missing, every imported ``nerfstudio.*`` and
    ``torchmetrics.image*`` module's ``LearnedPerceptualImagePatchSimilarity`` is a NaN-scoring stand-in.
    """
    with contextlib.ExitStack() as stack:
        if not os.path.isfile(alexnet_weights_path()):
            import torchmetrics.image.lpip  # noqa: F401  (so the patch also reaches later imports of it)

            name = "LearnedPerceptualImagePatchSimilarity"
            for module_name, module in list(sys.modules.items()):
                if module_name.startswith(("nerfstudio.", "torchmetrics.image")) and hasattr(module, name):
                    stack.enter_context(mock.patch.object(module, name, _NaNLPIPS))
        yield
