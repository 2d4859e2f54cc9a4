"""The 3DGS-family scene extent from the training cameras, and scaling a learning rate by it.

INRIA's 3DGS and the codes built on it (Compact-3DGS, Gaussian-Flow, 4D-Rotor GS) size their densification
thresholds and the centres' learning rate by the radius of the camera centres (``getNerfppNorm``).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["camera_extent", "scale_learning_rate"]


def camera_extent(camera_to_worlds: Float[Tensor, "*n 3 4"], factor: float = 1.1) -> float:
    """``factor`` x the largest distance of a camera centre from the centres' mean (3DGS's ``getNerfppNorm``
    radius: ``factor = 1.1``; 4D-Rotor GS's D-NeRF parser uses 1). One camera, or all at one place: 1."""
    centres = camera_to_worlds[..., :3, 3].reshape(-1, 3).double()
    if centres.shape[0] == 0:
        return 1.0
    radius = float((centres - centres.mean(dim=0)).norm(dim=-1).max()) * factor
    return radius if radius > 0 else 1.0


def scale_learning_rate(optimizer: torch.optim.Optimizer, scheduler, factor: float) -> None:
    """Multiply an optimizer's learning rate by ``factor``, schedule included (the scheduler's base rates)."""
    for group in optimizer.param_groups:
        group["lr"] *= factor
        if "initial_lr" in group:
            group["initial_lr"] *= factor
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
