"""Training losses (pure PyTorch, no nerfstudio import).

* :mod:`ng_methods.losses.s3im` -- S3IM, Stochastic Structural SIMilarity over ray batches (Xie et al., ICCV 2023).
* :mod:`ng_methods.losses.ssim` -- the strided Gaussian-window SSIM it uses.
"""

from ng_methods.losses.s3im import (
    S3IM,
    S3IMConfig,
    check_s3im_batch,
    s3im_indices,
    s3im_loss,
    s3im_virtual_patch,
)
from ng_methods.losses.ssim import gaussian_window, ssim

__all__ = [
    "S3IM",
    "S3IMConfig",
    "check_s3im_batch",
    "gaussian_window",
    "s3im_indices",
    "s3im_loss",
    "s3im_virtual_patch",
    "ssim",
]
