"""Half-image evaluation for in-the-wild scenes: fit the test image's appearance on its left half, score the right.

A test photo's appearance (lighting, exposure, white balance) is unknown to the model, so rendering it with any
training image's embedding mixes appearance error into the geometry metrics. NeRF-W's protocol, which Splatfacto-W
follows, gives the method the left half of every test image to find the appearance and scores only the right half.

Two protocols, both scoring PSNR/SSIM/LPIPS on the right half:

* official (datamanager option ``train_on_test_left_halves``, see :mod:`.datamanager`): the test images are part
  of training with their right half masked, so their embeddings are learned jointly with the scene (and their
  left halves also supervise geometry); evaluation renders them with those embeddings, no fit;
* post-hoc fit (default, stricter: no test pixel shapes the geometry): each test image gets a fresh embedding,
  initialised to the mean training embedding and optimised with Adam for ``steps`` steps on the left half,
  everything else frozen (:func:`fit_appearance_embedding`).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from pytorch_msssim import ssim
from torch import Tensor

from ng_methods.metrics import image_metrics


def left_columns(width: int) -> int:
    """Number of columns in the left (fitting) half; the right (scored) half is ``[left_columns(W), W)``."""
    return width // 2


def column_crop_camera(camera: Cameras, start: int, stop: int) -> Cameras:
    """A pinhole camera seeing exactly columns ``[start, stop)`` of ``camera``'s image (same pixel grid)."""
    return Cameras(
        camera_to_worlds=camera.camera_to_worlds,
        fx=camera.fx,
        fy=camera.fy,
        cx=camera.cx - start,
        cy=camera.cy,
        width=torch.full_like(camera.width, stop - start),
        height=camera.height,
        camera_type=camera.camera_type,
        metadata=None,  # not a training camera: the embedding comes from the fit, never from cam_idx
    )


def photometric_loss(
    pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], ssim_lambda: float = 0.2
) -> Tensor:
    """The training loss without masks: ``(1 - l) * L1 + l * (1 - SSIM)``."""
    l1 = (pred - gt).abs().mean()
    if ssim_lambda == 0.0:
        return l1
    structural = ssim(pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None], data_range=1.0, size_average=True)
    return (1 - ssim_lambda) * l1 + ssim_lambda * (1 - structural)


def fit_appearance_embedding(
    render: Callable[[Tensor], Tensor],
    target: Float[Tensor, "H W 3"],
    initial: Float[Tensor, "E"],
    steps: int,
    lr: float,
    ssim_lambda: float = 0.2,
) -> Tuple[Float[Tensor, "E"], List[float]]:
    """Optimise an embedding so that ``render(embedding)`` matches ``target``; returns it and the loss per step.

    Only the embedding is optimised (gradients are taken with ``torch.autograd.grad``, so no model parameter's
    ``.grad`` is touched). Works under ``torch.no_grad()`` callers (``ns-eval``): gradients are enabled locally.
    """
    embedding = initial.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([embedding], lr=lr)
    losses: List[float] = []
    with torch.enable_grad():
        for _ in range(steps):
            loss = photometric_loss(render(embedding), target, ssim_lambda)
            (grad,) = torch.autograd.grad(loss, [embedding])
            embedding.grad = grad
            optimizer.step()
            losses.append(float(loss.detach()))
    return embedding.detach(), losses


def right_half_metrics(
    pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], lpips: Optional[torch.nn.Module]
) -> Dict[str, float]:
    """PSNR / SSIM / LPIPS on the right half ``[:, W // 2:]`` only (the official column split)."""
    start = left_columns(gt.shape[1])
    return image_metrics(pred[:, start:], gt[:, start:], lpips)
