"""Training/evaluation protocol helpers shared by the dynamic Gaussian methods.

- :func:`scale_lrs`: multiply parameter groups' learning rates by the camera extent (the released
  ``spatial_lr_scale``; the extent is :func:`ng_methods.splat.extent.camera_extent`), once across resumes;
- :func:`batch_mean`: a per-view loss or metrics function averaged over a ``[B]`` batch of views;
- :func:`quantised_metrics`: PSNR/SSIM/LPIPS on 8-bit images, as the released ``metrics.py`` scripts read PNGs.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Tuple

import torch
from nerfstudio.engine.optimizers import Optimizers
from torch import Tensor

from ng_methods.metrics import image_metrics
from ng_methods.splat.extent import scale_learning_rate

_SCALED_KEY = "ng_extent_scaled"
"""Marker in an optimizer's param group: its learning rate already carries the extent (survives checkpoints)."""


def scale_lrs(optimizers: Optimizers, groups: Iterable[str], factor: float) -> None:
    """Multiply the learning rate (and its scheduler's base) of ``groups`` by ``factor``, once per group."""
    for name in groups:
        optimizer = optimizers.optimizers.get(name)
        if optimizer is None:
            continue
        group = optimizer.param_groups[0]
        if group.get(_SCALED_KEY):  # resumed from a checkpoint that already holds the scaled rate
            continue
        scale_learning_rate(optimizer, optimizers.schedulers.get(name), factor)
        group[_SCALED_KEY] = True


def per_view(outputs: Dict, batch: Dict, i: int) -> Tuple[Dict, Dict]:
    """View ``i`` of stacked outputs (``rgb``, ``accumulation``) and of a stacked batch."""
    view_outputs = {k: (v[i] if k in ("rgb", "accumulation") else v) for k, v in outputs.items()}
    view_batch = {k: v[i] for k, v in batch.items() if isinstance(v, (Tensor, list))}
    return view_outputs, view_batch


def batch_mean(function: Callable[..., Dict], outputs: Dict, batch: Dict) -> Dict:
    """``function(outputs, batch)`` (a per-view loss or metrics function) averaged over a batch of views."""
    results = [function(*per_view(outputs, batch, i)) for i in range(outputs["rgb"].shape[0])]
    return {k: sum(r[k] for r in results) / len(results) for k in results[0]}


def quantise_8bit(image: Tensor) -> Tensor:
    """Round ``[0, 1]`` values to 8 bits as ``torchvision.utils.save_image`` does before the PNG is written."""
    return torch.floor(image.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0


def quantised_metrics(model, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]):
    """``NGSplatModel.get_image_metrics_and_images`` on 8-bit rendered and ground-truth images."""
    gt_rgb = quantise_8bit(model.composite_with_background(model.get_gt_img(batch["image"]), outputs["background"]))
    predicted = quantise_8bit(outputs["rgb"])
    metrics = image_metrics(predicted, gt_rgb, model.lpips)
    return metrics, {"img": torch.cat([gt_rgb, predicted], dim=1)}
