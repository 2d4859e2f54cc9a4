"""Image metrics shared by our methods: PSNR, SSIM and (when available offline) LPIPS."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from jaxtyping import Float
from torch import Tensor
from torchmetrics.functional import structural_similarity_index_measure


def image_metrics(
    pred: Float[Tensor, "h w 3"], target: Float[Tensor, "h w 3"], lpips: Optional[torch.nn.Module]
) -> Dict[str, float]:
    """PSNR (dB), SSIM and LPIPS of one rendered image; LPIPS (``lpips``: AlexNet, ``lpips_vgg``: VGG) comes from
    ``compat.lpips.make_lpips()`` and is omitted when it is None or lacks a backbone."""
    pred_nchw = pred.clamp(0.0, 1.0).permute(2, 0, 1)[None]
    target_nchw = target.permute(2, 0, 1)[None]
    mse = torch.mean((pred_nchw - target_nchw) ** 2)
    metrics = {
        "psnr": float(-10.0 * torch.log10(mse.clamp(min=1e-10))),
        "ssim": float(structural_similarity_index_measure(pred_nchw, target_nchw, data_range=1.0)),
    }
    if lpips is not None:  # an OfflineLPIPS: "lpips" (AlexNet) and/or "lpips_vgg"
        scores = lpips.to(pred.device)(pred_nchw, target_nchw)
        metrics.update({name: float(score) for name, score in scores.items()})
    return metrics
