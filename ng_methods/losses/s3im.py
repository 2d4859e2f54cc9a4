"""S3IM: Stochastic Structural SIMilarity (Xie et al., ICCV 2023).

"S3IM: Stochastic Structural SIMilarity and Its Unreasonable Effectiveness for Neural Fields" turns the colours of
a batch of *independent* rays into virtual images and compares them with SSIM, so a per-pixel NeRF loss also sees
multi-pixel structure. This module follows the official implementation (``model_components/s3im.py`` of
Madaoer/S3IM-Neural-Fields) step by step:

1. Build ``repeat_time`` index lists over the ``n`` rays: the first is the identity ``arange(n)``, each of the
   other ``repeat_time - 1`` is a fresh ``randperm(n)``; concatenate them (length ``n * repeat_time``).
2. Gather predicted and target colours with these indices, giving ``[n * repeat_time, C]``.
3. Transpose to ``[C, n * repeat_time]`` and reshape row-major to one virtual image
   ``[1, C, patch_height, patch_width * repeat_time]``. Note that this is a plain reshape of the concatenated
   sequence, *not* blocks placed side by side: the identity block fills the first ``n / (patch_width *
   repeat_time)`` rows of the virtual image (6.4 rows for the defaults), and SSIM windows straddle block ends.
4. Loss ``= 1 - SSIM(virtual pred, virtual target)`` with the strided Gaussian-window SSIM of
   :mod:`ng_methods.losses.ssim` (kernel 4, stride 4, zero padding ``(4 - 1) // 2 = 1``, C1 = 0.01^2,
   C2 = 0.03^2, mean over the map).

The reshape only works when ``n == patch_height * patch_width`` (the paper: the batch size must equal the virtual
patch size; 4096 rays for the default 64x64). Other batch sizes raise a ``ValueError`` that names the sizes that
work; nothing is padded, cropped or resampled silently.

The loss lies in ``[0, 2]`` (SSIM lies in ``[-1, 1]``); it is 0 for identical inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ng_methods.losses.ssim import gaussian_window, ssim

S3IM_SIGMA = 1.5
"""Standard deviation of the Gaussian SSIM window (fixed in the reference code)."""


def _nearest_patch_shape(n_rays: int) -> tuple[int, int]:
    """The most square ``(height, width)`` with ``height * width == n_rays`` and ``height <= width``."""
    height = math.isqrt(n_rays)
    while height > 1 and n_rays % height:
        height -= 1
    return height, n_rays // height


def check_s3im_batch(n_rays: int, patch_height: int, patch_width: int) -> None:
    """Raise a ``ValueError`` unless ``n_rays`` rays fill one ``patch_height x patch_width`` virtual patch."""
    if n_rays == patch_height * patch_width:
        return
    suggestion = ""
    if n_rays > 0:
        h, w = _nearest_patch_shape(n_rays)
        suggestion = f", or set patch_height={h}, patch_width={w} (any pair with product {n_rays})"
    raise ValueError(
        f"S3IM needs exactly patch_height * patch_width = {patch_height} * {patch_width} = "
        f"{patch_height * patch_width} rays per batch (one virtual patch), got {n_rays}. Use a train batch of "
        f"{patch_height * patch_width} rays{suggestion}."
    )


def s3im_indices(
    n_rays: int,
    repeat_time: int,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
) -> Int[Tensor, "n_rays_times_repeat"]:
    """The concatenated S3IM index lists: ``arange(n)`` then ``repeat_time - 1`` random permutations.

    The permutations are drawn as successive ``torch.randperm(n_rays, generator=generator)`` calls, on the
    generator's device when one is given (so a seeded ``torch.Generator`` reproduces them exactly), otherwise on
    ``device`` with the global RNG. The result is moved to ``device``.

    Example:
        >>> idx = s3im_indices(4, 3, torch.Generator().manual_seed(0))
        >>> idx.shape, idx[:4].tolist()
        (torch.Size([12]), [0, 1, 2, 3])
    """
    if repeat_time < 1:
        raise ValueError(f"repeat_time must be >= 1, got {repeat_time}")
    perm_device = generator.device if generator is not None else device
    blocks = [torch.arange(n_rays, device=perm_device)]
    for _ in range(repeat_time - 1):
        blocks.append(torch.randperm(n_rays, generator=generator, device=perm_device))
    return torch.cat(blocks).to(device)


def s3im_virtual_patch(
    values: Float[Tensor, "n_rays channels"],
    indices: Int[Tensor, "n_rays_times_repeat"],
    patch_height: int,
    patch_width: int,
) -> Float[Tensor, "1 channels patch_height width_times_repeat"]:
    """Gather ``values`` at ``indices`` and reshape to the virtual image ``[1, C, patch_height, W * R]``.

    ``R = len(indices) // n_rays``. The layout is the reference one: ``values[indices]`` is transposed to
    ``[C, n * R]`` and reshaped row-major, so flat position ``p`` of every channel holds ray ``indices[p]``.
    """
    n_rays, channels = values.shape
    check_s3im_batch(n_rays, patch_height, patch_width)
    if indices.numel() % n_rays:
        raise ValueError(f"len(indices) = {indices.numel()} is not a multiple of n_rays = {n_rays}")
    repeat_time = indices.numel() // n_rays
    gathered = values[indices.to(values.device)]  # [n * R, C]
    return gathered.permute(1, 0).reshape(1, channels, patch_height, patch_width * repeat_time)


def _check_inputs(pred: Tensor, target: Tensor) -> None:
    if pred.dim() != 2 or pred.shape != target.shape:
        raise ValueError(
            "S3IM expects predicted and target pixel colours of the ray batch as two [n_rays, channels] tensors of "
            f"the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def s3im_loss(
    pred: Float[Tensor, "n_rays 3"],
    target: Float[Tensor, "n_rays 3"],
    kernel_size: int = 4,
    stride: int = 4,
    repeat_time: int = 10,
    patch_height: int = 64,
    patch_width: int = 64,
    generator: Optional[torch.Generator] = None,
    window: Optional[Float[Tensor, "kernel_size kernel_size"]] = None,
) -> Float[Tensor, ""]:
    """S3IM loss ``1 - SSIM`` between the virtual patches of predicted and target ray colours.

    Args:
        pred: Rendered pixel colours of the ray batch (final composited colours, not per-sample), ``[n, C]``
            (``C = 3`` for RGB; any channel count works).
        target: Ground-truth pixel colours of the same rays, ``[n, C]``.
        kernel_size: SSIM Gaussian window size.
        stride: SSIM window stride.
        repeat_time: Number of index lists (1 identity + ``repeat_time - 1`` random permutations).
        patch_height: Height of the virtual patch.
        patch_width: Width of one virtual patch; the virtual image is ``patch_width * repeat_time`` wide.
        generator: Optional ``torch.Generator`` for the permutations (deterministic tests); the global RNG
            otherwise. See :func:`s3im_indices` for how it is used.
        window: Optional precomputed ``[kernel_size, kernel_size]`` :func:`gaussian_window` (sigma 1.5).

    Returns:
        A scalar in ``[0, 2]`` (0 for identical inputs), in ``pred``'s dtype (at least float32).

    Raises:
        ValueError: if ``n != patch_height * patch_width`` (the message names the sizes that work) or the
            shapes of ``pred`` and ``target`` differ.

    Example:
        >>> pred, target = torch.rand(4096, 3), torch.rand(4096, 3)
        >>> loss = s3im_loss(pred, target, generator=torch.Generator().manual_seed(0))
        >>> 0.0 < float(loss) < 2.0
        True
    """
    _check_inputs(pred, target)
    check_s3im_batch(pred.shape[0], patch_height, patch_width)
    indices = s3im_indices(pred.shape[0], repeat_time, generator=generator, device=pred.device)
    src_patch = s3im_virtual_patch(pred, indices, patch_height, patch_width)
    tar_patch = s3im_virtual_patch(target.to(pred.device), indices, patch_height, patch_width)
    return 1.0 - ssim(src_patch, tar_patch, kernel_size=kernel_size, stride=stride, sigma=S3IM_SIGMA, window=window)


class S3IM(nn.Module):
    """S3IM loss module (see :func:`s3im_loss`); the Gaussian window is cached as a non-persistent buffer.

    The buffer is not saved in ``state_dict``, so adding this module to a model does not change its checkpoints.

    Args:
        kernel_size: SSIM Gaussian window size (default 4).
        stride: SSIM window stride (default 4).
        repeat_time: 1 identity + ``repeat_time - 1`` random permutations (default 10).
        patch_height: Virtual patch height (default 64).
        patch_width: Virtual patch width (default 64); batches must hold ``patch_height * patch_width`` rays.

    Example:
        >>> s3im = S3IM()
        >>> pred = torch.rand(4096, 3, requires_grad=True)
        >>> loss = s3im(pred, torch.rand(4096, 3))  # scalar, shape []
        >>> loss.backward()
    """

    window: Tensor

    def __init__(
        self,
        kernel_size: int = 4,
        stride: int = 4,
        repeat_time: int = 10,
        patch_height: int = 64,
        patch_width: int = 64,
    ) -> None:
        super().__init__()
        if repeat_time < 1:
            raise ValueError(f"repeat_time must be >= 1, got {repeat_time}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if patch_height < 1 or patch_width < 1:
            raise ValueError(f"patch_height and patch_width must be >= 1, got {patch_height} and {patch_width}")
        self.kernel_size = kernel_size
        self.stride = stride
        self.repeat_time = repeat_time
        self.patch_height = patch_height
        self.patch_width = patch_width
        self.register_buffer(
            "window", gaussian_window(kernel_size, S3IM_SIGMA, dtype=torch.float32), persistent=False
        )

    @property
    def num_rays(self) -> int:
        """The ray-batch size this module accepts (``patch_height * patch_width``)."""
        return self.patch_height * self.patch_width

    def forward(
        self,
        pred: Float[Tensor, "n_rays 3"],
        target: Float[Tensor, "n_rays 3"],
        generator: Optional[torch.Generator] = None,
    ) -> Float[Tensor, ""]:
        """``1 - SSIM`` of the virtual patches; ``pred``/``target`` are ``[patch_height * patch_width, C]``."""
        compute_dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
        # The cached float32 window is reused when the SSIM runs in float32; other dtypes get an exact window.
        window = self.window if self.window.dtype == compute_dtype else None
        return s3im_loss(
            pred,
            target,
            kernel_size=self.kernel_size,
            stride=self.stride,
            repeat_time=self.repeat_time,
            patch_height=self.patch_height,
            patch_width=self.patch_width,
            generator=generator,
            window=window,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, repeat_time={self.repeat_time}, "
            f"patch_height={self.patch_height}, patch_width={self.patch_width}"
        )


@dataclass
class S3IMConfig:
    """S3IM settings for embedding in a model config: ``s3im: S3IMConfig = field(default_factory=S3IMConfig)``.

    A model adds ``weight * s3im(rgb_pred, rgb_gt)`` to its training losses when ``weight > 0``; its train batch must
    then hold ``patch_height * patch_width`` rays (4096 by default).

    Example:
        >>> cfg = S3IMConfig(weight=1.0)
        >>> loss_fn = cfg.setup()  # an S3IM module
        >>> loss_fn.num_rays
        4096
    """

    weight: float = 0.0
    """Multiplier of the S3IM loss in the total loss; 0 disables it (the paper uses 1.0 for most NeRF variants)."""
    kernel_size: int = 4
    """Size of the Gaussian SSIM window (sigma 1.5)."""
    stride: int = 4
    """Stride of the SSIM window over the virtual image."""
    repeat_time: int = 10
    """Number of stacked index lists: the batch in its own order plus repeat_time - 1 random permutations."""
    patch_height: int = 64
    """Height of the virtual patch; patch_height * patch_width must equal the number of rays per train batch."""
    patch_width: int = 64
    """Width of one virtual patch (the virtual image is patch_width * repeat_time wide)."""

    @property
    def enabled(self) -> bool:
        """Whether the loss contributes (``weight > 0``)."""
        return self.weight > 0

    def setup(self, **kwargs) -> S3IM:
        """The :class:`S3IM` module for these settings (keyword arguments override fields)."""
        params = dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            repeat_time=self.repeat_time,
            patch_height=self.patch_height,
            patch_width=self.patch_width,
        )
        params.update(kwargs)
        return S3IM(**params)
